//! The figures' SVG plots (plotters, SVG backend only): one panel per
//! measure, grouped bars per workload, one bar per mode, and the paper's
//! number as a hatched-grey bar at the end of each group where it has one.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One panel: bars of `series` per group, and optionally the paper's.
pub struct Bars {
    pub title: String,
    pub y_label: String,
    pub groups: Vec<String>,
    /// (label, one value per group; None: not measured).
    pub series: Vec<(String, Vec<Option<f64>>)>,
    /// (label, the paper's value per group).
    pub paper: Option<(String, Vec<Option<f64>>)>,
}

const PANEL_H: u32 = 360;
const WIDTH: u32 = 900;

/// Writes the panels, one above the other, to an SVG file.
pub fn write(path: &Path, panels: &[Bars]) -> Result<()> {
    let h = PANEL_H * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (WIDTH, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    for (p, area) in panels.iter().zip(root.split_evenly((panels.len().max(1), 1))) {
        panel(&area, p).map_err(|e| anyhow!("plot {}: {e}", p.title))?;
    }
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Bars,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut all: Vec<(String, &Vec<Option<f64>>, bool)> = p.series.iter().map(|(l, v)| (l.clone(), v, false)).collect();
    if let Some((l, v)) = &p.paper {
        all.push((l.clone(), v, true));
    }
    let per = all.len().max(1);
    let top = all.iter().flat_map(|(_, v, _)| v.iter().flatten()).fold(0.0f64, |a, &b| a.max(b)) * 1.6; // headroom: names, legend
    let groups = p.groups.len().max(1);
    // x: group g's bar k spans [g*(per+1)+k, +1); one empty slot between groups.
    let span = (groups * (per + 1)) as f64;
    let centres: Vec<f64> = (0..groups).map(|g| (g * (per + 1)) as f64 + per as f64 / 2.0).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .right_y_label_area_size(0)
        .build_cartesian_2d(0.0..span, 0.0..top.max(1e-9))?;
    chart.configure_mesh().disable_x_mesh().x_labels(0).y_desc(&p.y_label).draw()?;
    // The groups' names inside the plot, at the top, over their bars.
    let style = TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    chart.draw_series(p.groups.iter().zip(&centres).map(|(n, &c)| Text::new(n.clone(), (c, top), style.clone())))?;
    for (k, (label, values, paper)) in all.iter().enumerate() {
        let color: RGBColor = if *paper {
            RGBColor(150, 150, 150)
        } else {
            {
                let (r, g, b) = Palette99::pick(k).to_rgba().rgb();
                RGBColor(r, g, b)
            }
        };
        let bars = values.iter().enumerate().filter_map(|(g, v)| {
            let x0 = (g * (per + 1) + k) as f64;
            v.map(|v| Rectangle::new([(x0 + 0.1, 0.0), (x0 + 0.9, v)], color.filled()))
        });
        chart
            .draw_series(bars)?
            .label(label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_the_labels() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        let b = Bars {
            title: "t".into(),
            y_label: "y".into(),
            groups: vec!["engineering".into(), "raytrace".into()],
            series: vec![("first-touch".into(), vec![Some(1.0), Some(0.9)]), ("migrate".into(), vec![Some(0.8), None])],
            paper: Some(("paper".into(), vec![Some(0.67), None])),
        };
        write(&path, &[b]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for s in ["<svg", "engineering", "raytrace", "migrate", "paper"] {
            assert!(svg.contains(s), "{s} missing");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
