// engineering: a memory-bound Verilog simulation for iverilog (the closest
// free analogue of the VCS runs in Disco's engineering workload).
//
// A clocked design with one state machine: every rising edge it steps a
// 32-bit LFSR, reads and updates one word of a 2^18-word memory at an
// address taken from the LFSR, and folds the word into an accumulator.
// The address stream is random, so the simulator's memory array (several
// MiB in vvp) is touched all over: memory-bound like a big netlist.
// `+cycles=N` sets the length; it prints 8 progress lines and `done`.
// xtask/src/tests/workloads.rs recomputes the same lines on the host.
module memsim;
  localparam ABITS = 18;
  localparam WORDS = 1 << ABITS;
  reg [31:0] mem [0:WORDS-1];
  reg [31:0] lfsr, acc;
  reg [ABITS-1:0] a;
  reg clk;
  integer i, cycle, cycles, report;

  initial begin
    if (!$value$plusargs("cycles=%d", cycles)) cycles = 100000;
    report = cycles / 8;
    for (i = 0; i < WORDS; i = i + 1) mem[i] = i * 32'h9E3779B1;
    lfsr = 32'hACE12468;
    acc = 0;
    cycle = 0;
    clk = 0;
  end

  always #5 clk = ~clk;

  always @(posedge clk) begin
    lfsr = {lfsr[30:0], lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]};
    a = lfsr[ABITS-1:0] ^ lfsr[31:32-ABITS];
    mem[a] = mem[a] + (lfsr ^ acc);
    acc = {acc[26:0], acc[31:27]} ^ mem[a];
    cycle = cycle + 1;
    if (cycle % report == 0) $display("cycle %0d acc %h lfsr %h", cycle, acc, lfsr);
    if (cycle == cycles) begin
      $display("done cycles %0d acc %h", cycle, acc);
      $finish;
    end
  end
endmodule
