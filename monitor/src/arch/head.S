// Entry at EL2, booted as an arm64 Linux Image (Documentation/arch/arm64/booting.rst):
// the primary CPU enters at _start with x0 = host DTB, MMU off, IRQs masked;
// secondary CPUs enter at secondary_entry through PSCI CPU_ON with x0 = their
// logical CPU index (the PSCI context id).

.section .text.head, "ax"
.global _start
_start:
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   __image_size            // image_size, including bss
    .quad   0x2                     // flags: little endian, 4 KiB pages
    .quad   0, 0, 0                 // res2-4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

primary_entry:
    mov     x19, x0
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:  mov     x0, #0
    bl      cpu_early
    mov     x0, x19
    bl      primary_main
    b       .

.text
.global secondary_entry
secondary_entry:
    mov     x19, x0
    bl      cpu_early
    mov     x0, x19
    bl      secondary_main
    b       .

// x0 = logical CPU index: give this CPU its stack and the EL2 vectors.
cpu_early:
    adrp    x1, STACKS
    add     x1, x1, :lo12:STACKS
    add     x2, x0, #1
    mov     x3, #{STACK_SIZE}
    madd    x1, x2, x3, x1
    mov     sp, x1
    adrp    x1, el2_vectors
    add     x1, x1, :lo12:el2_vectors
    msr     vbar_el2, x1
    isb
    ret
