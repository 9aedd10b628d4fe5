/*
 * Context switch for x86-64 (System V ABI).
 *
 * void *weft__ctx_switch(void **save_sp, void *to_sp, void *arg);
 *
 * Pushes the callee-saved registers (rbp, rbx, r12-r15) and the floating-point
 * control state (MXCSR, x87 control word) onto the current stack, stores the
 * stack pointer in *save_sp, loads to_sp and pops the same frame from there,
 * then returns arg in rax: the suspended side sees arg as the return value of
 * its own earlier weft__ctx_switch call. Nothing else is saved: every other
 * register is caller-saved, so the C caller already assumes it is clobbered.
 *
 * Frame (lowest address first), 64 bytes:
 *   0: MXCSR (4)  4: x87 CW (2)  6: pad (2)
 *   8: r15  16: r14  24: r13  32: r12  40: rbx  48: rbp  56: return address
 *
 * A fresh context (weft__ctx_init) is a frame whose return address is
 * weft__ctx_trampoline, with the entry function in r12 and its data in rbx.
 *
 * The return is a plain `ret`, so no indirect branch lands anywhere and IBT
 * needs no landing pad at the return sites. It does defeat a CET shadow
 * stack, so this object declares IBT only (see the property note at the end).
 */
#if defined(__x86_64__)

    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    endbr64
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    movq    %rdx, %rax
    ret
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

/*
 * First code a fresh context runs. rsp is 16-byte aligned here (the frame is
 * built so), so the call below enters the C function with rsp = 8 mod 16 as
 * the ABI requires. entry(arg, data) never returns; ud2 traps if it does.
 * The CFI marks this as the outermost frame so debuggers stop unwinding here.
 */
    .globl  weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type   weft__ctx_trampoline, @function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    endbr64
    movq    %rax, %rdi
    movq    %rbx, %rsi
    xorl    %ebp, %ebp
    callq   *%r12
    ud2
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

    .section .note.GNU-stack,"",@progbits

/* GNU property note: this object is IBT-compatible (it has endbr64 at every
 * indirect-branch target) but not SHSTK-compatible (the switch returns into
 * another stack's frame). 0xc0000002 = GNU_PROPERTY_X86_FEATURE_1_AND,
 * bit 0 = IBT. */
    .section .note.gnu.property,"a",@note
    .p2align 3
    .long   4
    .long   16
    .long   5
    .asciz  "GNU"
    .long   0xc0000002
    .long   4
    .long   1
    .long   0
#endif
