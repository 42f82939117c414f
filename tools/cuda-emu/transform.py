#!/usr/bin/env python3
"""attention.cu -> host C++ for the fiber emulator: removes the asm primitives (the harness defines
emulated ones), turns dynamic shared arrays into per-CTA buffers and kernel launches into emu_launch."""
import re, sys
src = open(sys.argv[1]).read()
lines = src.split('\n')
# 1. drop the asm primitives: from smem_u32 to the append section
a = next(i for i, l in enumerate(lines) if 'uint32_t smem_u32(' in l)
b = next(i for i, l in enumerate(lines) if l.startswith('/* ---- append'))
lines = lines[:a] + ['/* (emulated primitives removed) */'] + lines[b:]
src = '\n'.join(lines)
# 2. dynamic shared memory
src, n = re.subn(r'extern __shared__ (?:__align__\(\d+\) )?(\w+) (\w+)\[\];', r'\1 *\2 = (\1 *)emu_dyn_smem();', src)
assert n >= 3, n
# 3. launches X<<<cfg>>>(args);
out = []; i = 0
while True:
    j = src.find('<<<', i)
    if j < 0: out.append(src[i:]); break
    # kernel expression: back to start of statement (after ';', '{', '}' or newline-ident)
    k = j
    depth = 0
    while k > 0:
        c = src[k-1]
        if c == '>': depth += 1
        elif c == '<': depth -= 1
        elif depth == 0 and not (c.isalnum() or c in '_:'):
            break
        k -= 1
    kern = src[k:j]
    e = src.find('>>>', j)
    cfg = src[j+3:e]
    assert src[e+3] == '('
    p = e + 4; depth = 1
    while depth:
        if src[p] == '(': depth += 1
        elif src[p] == ')': depth -= 1
        p += 1
    args = src[e+4:p-1]
    out.append(src[i:k])
    out.append('emu_launch([&] { %s(%s); }, %s)' % (kern, args, cfg))
    i = p
src = ''.join(out)
src = src.replace('cudaFuncSetAttribute(', 'emu_cudaFuncSetAttribute(')
src = src.replace('cudaPeekAtLastError()', 'cudaSuccess')
open(sys.argv[2], 'w').write(src)
