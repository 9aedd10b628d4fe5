/*
 * Context switch for aarch64 (AAPCS64, Linux).
 *
 * void *weft__ctx_switch(void **save_sp, void *to_sp, void *arg);
 *
 * Stores the callee-saved registers (x19-x28, x29, x30, the low halves d8-d15
 * of v8-v15) and FPCR in a frame on the current stack, stores sp in *save_sp,
 * loads to_sp, restores the same frame from there and returns arg in x0 to
 * the restored x30: the suspended side sees arg as the return value of its own
 * earlier weft__ctx_switch call. Every other register is caller-saved (x18 is
 * a scratch register on Linux), so the C caller already assumes it clobbered.
 * FPCR is per context because a task that changes the rounding mode must not
 * change it for whatever task the worker runs next. FPSR (the cumulative
 * exception flags) is not saved: AAPCS64 lets any call change those, so no
 * caller can expect them to survive this one either.
 *
 * Frame (lowest address first), 176 bytes, so sp stays 16-byte aligned:
 *   0: x19 x20 ... x28 (80)  80: x29  88: x30  96: d8 ... d15 (64)
 *   160: FPCR  168: pad
 *
 * A fresh context (weft__ctx_init) is a frame whose x30 is
 * weft__ctx_trampoline, with the entry function in x19 and its data in x20.
 *
 * x30 is stored signed (PACIASP, modifier = sp at entry, which is also the sp
 * the frame is popped back to) and authenticated before the `ret`: the saved
 * return addresses of suspended tasks sit in ordinary heap memory for as long
 * as the task sleeps, which makes them the most attractive thing in the
 * runtime to overwrite. weft__ctx_init signs the trampoline address the same
 * way. The keys are per process, so a context may resume on another thread.
 * PACIASP, AUTIASP and PACIA1716 are HINT-space encodings: where pointer
 * authentication is absent or disabled all three are NOPs together, so the
 * frame stays consistent on every CPU and with every -mbranch-protection.
 *
 * The switch returns with a plain `ret`, which BTI does not check, so the
 * resumed call sites need no landing pads. Both entry points still start with
 * `bti c`: the switch may be called through a pointer, and an unmarked
 * trampoline would only stay safe as long as nothing ever branches to it
 * indirectly (Boost #308 is what happens otherwise).
 *
 * The instructions are spelled as `hint #n` so that the file assembles for
 * plain armv8-a; the mnemonic is in the comment.
 */
#if defined(__aarch64__)

    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, %function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    hint    #34                     /* bti c */
    hint    #25                     /* paciasp */
    .cfi_negate_ra_state
    sub     sp, sp, #176
    /* The CFI describes the frame relative to sp, and both stacks hold the
     * same layout, so it stays true across the `mov sp, x1` below: an
     * unwinder stopped anywhere in here finds whichever context owns sp. */
    .cfi_def_cfa_offset 176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x10, sp
    str     x10, [x0]
    mov     sp, x1
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
    ldr     x10, [sp, #160]
    /* Writing FPCR can stall the pipeline on some cores while reading it is
     * cheap, and the two sides nearly always agree (glibc's fesetround skips
     * the write for the same reason). x9 still holds our own FPCR. */
    cmp     x9, x10
    b.eq    1f
    msr     fpcr, x10
1:
    add     sp, sp, #176
    .cfi_def_cfa_offset 0
    .cfi_restore x19
    .cfi_restore x20
    .cfi_restore x21
    .cfi_restore x22
    .cfi_restore x23
    .cfi_restore x24
    .cfi_restore x25
    .cfi_restore x26
    .cfi_restore x27
    .cfi_restore x28
    .cfi_restore x29
    .cfi_restore x30
    hint    #29                     /* autiasp */
    .cfi_negate_ra_state
    mov     x0, x2
    ret
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

/*
 * First code a fresh context runs, entered by the switch's `ret` with x0 =
 * the arg of that first switch and sp 16-byte aligned at the top of the
 * stack. entry(arg, data) never returns; brk traps if it does.
 *
 * x29 = 0 ends frame-pointer walks at entry's frame record, and the CFI marks
 * x30 undefined so DWARF unwinders stop here too. x30 itself needs no
 * clearing: the `blr` overwrites it with the return address into this
 * function, which is exactly what the undefined-x30 rule is looked up for.
 */
    .globl  weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type   weft__ctx_trampoline, %function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    hint    #34                     /* bti c */
    mov     x1, x20
    mov     x29, #0
    blr     x19
    brk     #0x3e8
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

    .section .note.GNU-stack,"",%progbits

/* GNU property note: both functions start with a BTI landing pad and every
 * saved return address is signed and authenticated, so this object is
 * compatible with BTI-guarded pages and PAC-RET. Without the note the linker
 * would drop BTI from the whole binary. 0xc0000000 =
 * GNU_PROPERTY_AARCH64_FEATURE_1_AND, bit 0 = BTI, bit 1 = PAC. */
    .section .note.gnu.property,"a",%note
    .p2align 3
    .long   4
    .long   16
    .long   5
    .asciz  "GNU"
    .long   0xc0000000
    .long   4
    .long   3
    .long   0
#endif
