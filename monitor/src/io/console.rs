//! The console: monitor log lines and every VM's output on the machine's
//! one UART, each guest line prefixed with its VM's name; input goes to the
//! VM that has the focus.

use crate::arch::{cpu, pl011::Pl011, timer};
use alloc::{string::String, vec::Vec};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use spin::Mutex;

static UART: Mutex<Option<Pl011>> = Mutex::new(None);

struct Writer<'a>(&'a Pl011);

impl Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.0.write_byte(b'\r');
            }
            self.0.write_byte(byte);
        }
        Ok(())
    }
}

/// Starts the console on the PL011 at `base` and routes `log` to it.
pub fn init(base: u64) {
    // SAFETY: `base` is the machine's UART from the host DTB; only the
    // console uses it.
    *UART.lock() = Some(unsafe { Pl011::new(base) });
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Prints formatted text as it is, without a prefix.
pub fn print(args: fmt::Arguments) {
    if let Some(uart) = UART.lock().as_ref() {
        let mut out = Writer(uart);
        end_partial(&mut out, NOBODY);
        let _ = out.write_fmt(args);
    }
}

/// The VM whose line is partly printed (its focused output so far has no
/// newline), or [`NOBODY`]. Changed only with the UART lock held.
static OPEN: AtomicUsize = AtomicUsize::new(NOBODY);
const NOBODY: usize = usize::MAX;
/// Ends an interrupted partial line: invisible on a terminal (erase to the
/// end of the line), and it tells xtask's reader that the line goes on in
/// a later `[name]+ ` line ([`CONTINUED`]).
pub const INTERRUPTED: &str = "\x1b[K\n";
/// The prefix mark of a line that continues an interrupted one.
pub const CONTINUED: char = '+';

/// Before `source` (a VM number, or [`NOBODY`] for the monitor) prints:
/// ends another VM's partial line, so no byte lands inside it.
fn end_partial(out: &mut Writer, source: usize) {
    let open = OPEN.load(Ordering::Relaxed);
    if open != NOBODY && open != source {
        let _ = out.write_str(INTERRUPTED);
        OPEN.store(NOBODY, Ordering::Relaxed);
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::io::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints without taking the lock: for the panic handler, which may have
/// interrupted a holder of it.
pub fn print_emergency(args: fmt::Arguments) {
    // SAFETY: forcing the lock only risks interleaved output, which is
    // acceptable when the monitor is going down.
    unsafe { UART.force_unlock() };
    print(args);
}

/// The console escape key, Ctrl-]: the key after it is a monitor command
/// (see [`Command`]), not guest input.
pub const ESCAPE: u8 = 0x1d;
static ESCAPED: AtomicBool = AtomicBool::new(false);
/// The digit a command typed so far waits for: [`NO_DIGIT`], the VM of
/// `Ctrl-] m V N`, `Ctrl-] r V` or `Ctrl-] b V N` (`b'm'`, `b'r'`,
/// `b'b'`), the node of `Ctrl-] m V N` (`b'n'`) or the tenths of
/// `Ctrl-] b V N` (`b't'`; the VM of both in [`DIGIT_VM`]).
static DIGIT_FOR: AtomicU8 = AtomicU8::new(NO_DIGIT);
static DIGIT_VM: AtomicUsize = AtomicUsize::new(0);
const NO_DIGIT: u8 = 0;
/// The VM (by number) that console input goes to.
static FOCUS: AtomicUsize = AtomicUsize::new(0);

/// A monitor command typed on the console; the scheduler's VM registry
/// carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `s`: statistics.
    Stats,
    /// `c`: the hottest pages of the miss counters.
    HotPages,
    /// `f`: the sharing census (machine frames, shared, possible sharing).
    Census,
    /// `0`-`9`: console input goes to VM n.
    Focus(usize),
    /// `m`, VM digit, node digit: move a VM's vCPUs and memory to a node.
    Move { vm: usize, node: usize },
    /// `r`, VM digit: reset a VM (its guest boots again), as a hung
    /// guest's operator would: a guest that masked its interrupts or
    /// disabled its interrupt controller cannot reset itself.
    Reset(usize),
    /// `b`, VM digit, tenths digit: set a VM's balloon target to that many
    /// tenths of its memory (0: give it all back).
    Balloon { vm: usize, tenths: usize },
}

/// Bytes typed on the console since the last call, for the guest with the
/// focus, and the monitor commands among them.
pub fn take_input() -> (Vec<u8>, Vec<Command>) {
    let mut typed = Vec::new();
    if let Some(uart) = UART.lock().as_ref() {
        while let Some(byte) = uart.read_byte() {
            typed.push(byte);
        }
    }
    let mut input = Vec::new();
    let mut commands = Vec::new();
    for byte in typed {
        let waiting = DIGIT_FOR.swap(NO_DIGIT, Ordering::Relaxed);
        if waiting != NO_DIGIT {
            commands.extend(digit_key(waiting, byte));
        } else if ESCAPED.swap(false, Ordering::Relaxed) {
            match byte {
                ESCAPE => input.push(ESCAPE),
                key => commands.extend(command(key)),
            }
        } else if byte == ESCAPE {
            ESCAPED.store(true, Ordering::Relaxed);
        } else {
            input.push(byte);
        }
    }
    (input, commands)
}

/// Console commands: Ctrl-] followed by one key.
fn command(key: u8) -> Option<Command> {
    match key {
        b'c' => Some(Command::HotPages),
        b's' => Some(Command::Stats),
        b'f' => Some(Command::Census),
        digit @ b'0'..=b'9' => Some(Command::Focus((digit - b'0') as usize)),
        b'm' => {
            print(format_args!("\ndisco: move which VM (0-9), then to which node (0-9)?\n"));
            DIGIT_FOR.store(b'm', Ordering::Relaxed);
            None
        }
        b'r' => {
            print(format_args!("\ndisco: reset which VM (0-9)?\n"));
            DIGIT_FOR.store(b'r', Ordering::Relaxed);
            None
        }
        b'b' => {
            print(format_args!("\ndisco: balloon of which VM (0-9), then how many tenths of its memory (0-9)?\n"));
            DIGIT_FOR.store(b'b', Ordering::Relaxed);
            None
        }
        _ => {
            print(format_args!(
                "\ndisco console: Ctrl-] then: 0-9 = send input to VM n, s = statistics (and start a new window), c = hottest pages (miss counters), f = sharing census (frames in use, shared, possible), m V N = move VM V's vCPUs and memory to node N, r V = reset VM V, b V N = balloon VM V to N tenths of its memory (0 = deflate), h = this help, Ctrl-] = send Ctrl-] to the guest\n"
            ));
            None
        }
    }
}

/// The digit `byte` for the command `waiting` for it (see [`DIGIT_FOR`]);
/// anything but a digit cancels.
fn digit_key(waiting: u8, byte: u8) -> Option<Command> {
    let Some(digit) = (byte as char).to_digit(10).map(|d| d as usize) else {
        let what = match waiting {
            b'r' => "reset",
            b'b' | b't' => "balloon",
            _ => "move",
        };
        print(format_args!("\ndisco: {what} cancelled\n"));
        return None;
    };
    let then = |next: u8| {
        DIGIT_VM.store(digit, Ordering::Relaxed);
        DIGIT_FOR.store(next, Ordering::Relaxed);
        None
    };
    match waiting {
        b'm' => then(b'n'),
        b'b' => then(b't'),
        b'n' => Some(Command::Move { vm: DIGIT_VM.load(Ordering::Relaxed), node: digit }),
        b't' => Some(Command::Balloon { vm: DIGIT_VM.load(Ordering::Relaxed), tenths: digit }),
        _ => Some(Command::Reset(digit)),
    }
}

/// Does VM number `vm` have the console's input focus?
pub fn has_focus(vm: usize) -> bool {
    FOCUS.load(Ordering::Relaxed) == vm
}

/// The VM number that has the focus.
pub fn focus() -> usize {
    FOCUS.load(Ordering::Relaxed)
}

/// Gives the console's input to VM number `vm` (the caller checked it runs).
pub fn set_focus(vm: usize) {
    FOCUS.store(vm, Ordering::Relaxed);
}

pub fn enable_input_interrupt() {
    if let Some(uart) = UART.lock().as_ref() {
        uart.enable_rx_interrupt();
    }
}

/// One VM's console output, with the VM's name at the start of every
/// line, collected into lines for watchers (the kernel-panic detector). The
/// VM with the input focus prints as it comes, so prompts and echoed keys
/// show at once; the others print whole lines. When anything else prints
/// while the focused VM's line is open, that line is ended
/// ([`INTERRUPTED`]) and its rest printed later after `[name]+ `, so no
/// byte of one source ever lands inside another's line.
pub struct GuestLines {
    line: String,
    /// Bytes of `line` already printed (focused output).
    printed: usize,
    /// The `[name] ` prefix of the current line is printed.
    prefixed: bool,
}

impl Default for GuestLines {
    fn default() -> Self {
        Self { line: String::new(), printed: 0, prefixed: false }
    }
}

/// Longest line kept; longer ones are printed in pieces.
const MAX_LINE: usize = 1024;

impl GuestLines {
    /// Takes output bytes; calls `on_line` with each completed line.
    pub fn push(&mut self, id: usize, vm: &str, bytes: &[u8], focused: bool, mut on_line: impl FnMut(&str)) {
        let guard = UART.lock();
        let Some(uart) = guard.as_ref() else { return };
        let mut out = Writer(uart);
        for &byte in bytes {
            match byte {
                b'\r' => {}
                b'\n' => {
                    self.print_rest(id, vm, &mut out);
                    let _ = out.write_str("\n");
                    OPEN.store(NOBODY, Ordering::Relaxed);
                    on_line(&self.line);
                    self.line.clear();
                    self.printed = 0;
                    self.prefixed = false;
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        self.print_rest(id, vm, &mut out);
                        let _ = out.write_str("\n");
                        OPEN.store(NOBODY, Ordering::Relaxed);
                        self.line.clear();
                        self.printed = 0;
                        self.prefixed = false;
                    }
                    self.line.push(if byte.is_ascii() { byte as char } else { '?' });
                }
            }
        }
        if focused && self.printed < self.line.len() {
            self.print_rest(id, vm, &mut out);
            OPEN.store(id, Ordering::Relaxed);
        }
    }

    /// Prints what of the line is not printed yet: after the `[name] `
    /// prefix, or after `[name]+ ` if another source ended the part
    /// printed before.
    fn print_rest(&mut self, id: usize, vm: &str, out: &mut Writer) {
        end_partial(out, id);
        if !self.prefixed {
            let _ = write!(out, "[{vm}] ");
            self.prefixed = true;
        } else if OPEN.load(Ordering::Relaxed) != id {
            let _ = write!(out, "[{vm}]{CONTINUED} ");
        }
        let _ = out.write_str(&self.line[self.printed..]);
        self.printed = self.line.len();
    }
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        let ms = timer::ticks_to_ms(timer::now());
        let level = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            log::Level::Info => "",
            _ => "debug: ",
        };
        print(format_args!(
            "disco: [{:>5}.{:03} cpu{}] {level}{}\n",
            ms / 1000,
            ms % 1000,
            cpu::index(),
            record.args()
        ));
    }

    fn flush(&self) {}
}
