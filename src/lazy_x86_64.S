/* lazy_x86_64.S: lazy_enter, where a lazily bound library function's
 * stub lands at its first call (src/lazy.c, cmake/lazy_stubs.sh). The
 * stub has put the symbol's number in %r11d and jumped here in place of
 * the function, so the caller's arguments are still in their registers
 * and on the stack: they are saved (the six integer registers, %rax,
 * which holds the number of vector registers a variadic call uses, and
 * %xmm0-7), lazy_resolve loads the library and returns the function's
 * address (or ends the process), the arguments are put back, and the
 * jump goes on to the function as if it had been called directly. */
  .section .note.GNU-stack, "", @progbits
  .text
  .globl lazy_enter
  .hidden lazy_enter
  .type lazy_enter, @function
lazy_enter:
  .cfi_startproc
  pushq %rbp
  .cfi_def_cfa_offset 16
  .cfi_offset %rbp, -16
  movq %rsp, %rbp
  .cfi_def_cfa_register %rbp
  pushq %rdi
  pushq %rsi
  pushq %rdx
  pushq %rcx
  pushq %r8
  pushq %r9
  pushq %rax
  /* Seven pushes after %rbp leave %rsp 8 bytes off 16; 136 more bytes
   * realign it for the call and hold the eight vector registers. */
  subq $136, %rsp
  movdqu %xmm0, 0(%rsp)
  movdqu %xmm1, 16(%rsp)
  movdqu %xmm2, 32(%rsp)
  movdqu %xmm3, 48(%rsp)
  movdqu %xmm4, 64(%rsp)
  movdqu %xmm5, 80(%rsp)
  movdqu %xmm6, 96(%rsp)
  movdqu %xmm7, 112(%rsp)
  movl %r11d, %edi
  call lazy_resolve
  movq %rax, %r11
  movdqu 0(%rsp), %xmm0
  movdqu 16(%rsp), %xmm1
  movdqu 32(%rsp), %xmm2
  movdqu 48(%rsp), %xmm3
  movdqu 64(%rsp), %xmm4
  movdqu 80(%rsp), %xmm5
  movdqu 96(%rsp), %xmm6
  movdqu 112(%rsp), %xmm7
  addq $136, %rsp
  popq %rax
  popq %r9
  popq %r8
  popq %rcx
  popq %rdx
  popq %rsi
  popq %rdi
  popq %rbp
  .cfi_def_cfa %rsp, 8
  jmp *%r11
  .cfi_endproc
  .size lazy_enter, .-lazy_enter
