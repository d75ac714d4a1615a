// EL2 exception vectors and the world switch into and out of a guest.
//
// guest_run(regs) saves the monitor's callee-saved registers on its stack,
// loads the guest's registers from `regs` (layout: arch::vcpu::VcpuRegs) and
// erets. Any exception from the guest enters through the lower-EL vectors,
// which store the guest's registers back into the VcpuRegs that the
// PerCpu at TPIDR_EL2 points at and return from guest_run with the exit kind. So the monitor sees
// a guest exit as a plain function return, as in KVM's __guest_enter.
// The monitor itself runs with IRQs masked; an exception taken at EL2 is a
// monitor bug and ends in el2_exception.

.equ REGS_PC, 248
.equ REGS_V, 272
.equ REGS_FPSR, 784
.equ REGS_FPCR, 792
.equ HOST_FRAME, 160

.text
.global guest_run
guest_run:
    sub     sp, sp, #HOST_FRAME
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x1, tpidr_el2           // PerCpu: the current VcpuRegs comes first
    str     x0, [x1]
    add     x1, x0, #REGS_V
    ldp q0, q1, [x1, #0]
    ldp q2, q3, [x1, #32]
    ldp q4, q5, [x1, #64]
    ldp q6, q7, [x1, #96]
    ldp q8, q9, [x1, #128]
    ldp q10, q11, [x1, #160]
    ldp q12, q13, [x1, #192]
    ldp q14, q15, [x1, #224]
    ldp q16, q17, [x1, #256]
    ldp q18, q19, [x1, #288]
    ldp q20, q21, [x1, #320]
    ldp q22, q23, [x1, #352]
    ldp q24, q25, [x1, #384]
    ldp q26, q27, [x1, #416]
    ldp q28, q29, [x1, #448]
    ldp q30, q31, [x1, #480]
    ldr     x2, [x0, #REGS_FPSR]
    msr     fpsr, x2
    ldr     x2, [x0, #REGS_FPCR]
    msr     fpcr, x2
    ldp     x2, x3, [x0, #REGS_PC]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret

// Entered from a lower-EL vector with the guest's x0/x1 pushed and x1 = kind.
guest_exit:
    mrs     x0, tpidr_el2
    ldr     x0, [x0]
    stp x2, x3, [x0, #16]
    stp x4, x5, [x0, #32]
    stp x6, x7, [x0, #48]
    stp x8, x9, [x0, #64]
    stp x10, x11, [x0, #80]
    stp x12, x13, [x0, #96]
    stp x14, x15, [x0, #112]
    stp x16, x17, [x0, #128]
    stp x18, x19, [x0, #144]
    stp x20, x21, [x0, #160]
    stp x22, x23, [x0, #176]
    stp x24, x25, [x0, #192]
    stp x26, x27, [x0, #208]
    stp x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #REGS_PC]
    add     x2, x0, #REGS_V
    stp q0, q1, [x2, #0]
    stp q2, q3, [x2, #32]
    stp q4, q5, [x2, #64]
    stp q6, q7, [x2, #96]
    stp q8, q9, [x2, #128]
    stp q10, q11, [x2, #160]
    stp q12, q13, [x2, #192]
    stp q14, q15, [x2, #224]
    stp q16, q17, [x2, #256]
    stp q18, q19, [x2, #288]
    stp q20, q21, [x2, #320]
    stp q22, q23, [x2, #352]
    stp q24, q25, [x2, #384]
    stp q26, q27, [x2, #416]
    stp q28, q29, [x2, #448]
    stp q30, q31, [x2, #480]
    mrs     x3, fpsr
    str     x3, [x0, #REGS_FPSR]
    mrs     x3, fpcr
    str     x3, [x0, #REGS_FPCR]
    mov     x0, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #HOST_FRAME
    ret

.macro guest_vector kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       guest_exit
.endm

.macro el2_vector kind
    .balign 0x80
    mov     x0, #\kind
    bl      el2_exception
    b       .
.endm

// Exit kinds; keep in sync with arch::vcpu::ExitKind.
.balign 0x800
.global el2_vectors
el2_vectors:
    el2_vector 0        // current EL, SP_EL0: sync
    el2_vector 1        //   irq
    el2_vector 2        //   fiq
    el2_vector 3        //   serror
    el2_vector 4        // current EL, SP_EL2: sync
    el2_vector 5        //   irq
    el2_vector 6        //   fiq
    el2_vector 7        //   serror
    guest_vector 0      // lower EL, AArch64: sync
    guest_vector 1      //   irq
    guest_vector 2      //   fiq
    guest_vector 3      //   serror
    guest_vector 4      // lower EL, AArch32: not supported
    guest_vector 4
    guest_vector 4
    guest_vector 4
