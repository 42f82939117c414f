#!/usr/bin/env python3
"""gemm_wq.cu -> host C++ for the fiber emulator (harness_wq.cpp): removes the inline-asm device
primitives (mma, cp.async, predicated x load; the harness defines emulated ones), puts the static
__shared__ arrays into the emulator's per-CTA shared memory, and turns <<<>>> launches into emu_launch.
  transform_wq.py in.cu out.cc [--inject N]   (N: a deliberate bug, to check that the harness sees it)"""
import re, sys
src = open(sys.argv[1]).read()
inject = int(sys.argv[sys.argv.index('--inject') + 1]) if '--inject' in sys.argv else 0
lines = src.split('\n')
def cut(start_pred, end_pred, repl):
    global lines
    a = next(i for i, l in enumerate(lines) if start_pred(l))
    b = next(i for i in range(a + 1, len(lines)) if end_pred(lines[i]))
    lines = lines[:a] + [repl] + lines[b:]
# 1. wq_mma (asm): from the device-primitives banner to the skinny-kernel banner
cut(lambda l: l.startswith('/* ---- device primitives'), lambda l: l.startswith('/* ---- the skinny kernel'),
    '/* (emulated wq_mma removed) */')
# 2. cp.async and the predicated x load (asm): wq_cp_async16 .. the comment before wq_mainloop
cut(lambda l: 'void wq_cp_async16(' in l, lambda l: l.startswith('/* The k loop of one warp'),
    '/* (emulated cp.async / wq_ldx removed) */')
src = '\n'.join(lines)
# 3. static shared memory -> the CTA's emulated shared memory (ring at 0, s_last at the end)
src, n = re.subn(r'__shared__ __align__\(16\) uint4 ring\[([^\]]+)\]\[([^;]+)\];',
                 r'uint4 (&ring)[\1][\2] = *reinterpret_cast<uint4 (*)[\1][\2]>(emu_dyn_smem());', src)
assert n == 2, n
src, n = re.subn(r'__shared__ int s_last;', r'int &s_last = *reinterpret_cast<int *>((char *)emu_dyn_smem() + emu::smem_size - 16);', src)
assert n == 2, n
# dynamic shared memory of wq_xs_kernel (its launch passes the real size + 16 for s_last)
src, n = re.subn(r'extern __shared__ __align__\(16\) uint4 wq_dsm\[\];', r'uint4 *wq_dsm = (uint4 *)emu_dyn_smem();', src)
assert n == 1, n
# 4. <<<>>> launches (repack, stage_x)
out = []; i = 0
while True:
    j = src.find('<<<', i)
    if j < 0: out.append(src[i:]); break
    k = j; depth = 0
    while k > 0:
        c = src[k-1]
        if c == '>': depth += 1
        elif c == '<': depth -= 1
        elif depth == 0 and not (c.isalnum() or c in '_:'): break
        k -= 1
    e = src.find('>>>', j)
    cfg = src[j+3:e]
    p = e + 4; depth = 1
    while depth:
        if src[p] == '(': depth += 1
        elif src[p] == ')': depth -= 1
        p += 1
    out.append(src[i:k])
    out.append('emu_launch([&] { %s(%s); }, %s)' % (src[k:j], src[e+4:p-1], cfg))
    i = p
src = ''.join(out)
# 5. injected bugs (the harness must report them)
if inject == 1:   # m1 kernel, GCH 2: group changes on the wrong chunk parity
    a = 'const bool odd = (c0 & 1) != 0;'; assert src.count(a) == 1; src = src.replace(a, 'const bool odd = (c0 & 1) == 0;')
elif inject == 4: # m1 kernel, GCH 0: group counter restarts one chunk late
    a = 'gleft = gch;\n      }'; assert src.count(a) == 1; src = src.replace(a, 'gleft = gch + 1;\n      }')
elif inject == 5: # m1 kernel, GCH 1/2: no dummy group when c0 starts a group (the change at c0 skips a group)
    a = 'const bool dummy = GCH != 0 && c0 == v0 * gch;'; assert src.count(a) == 1; src = src.replace(a, 'const bool dummy = false;')
elif inject == 2: # m1 kernel: waits one cp.async group too few -> reads a stage before it lands
    a = 'wq_cp_wait<S - 2>();\n        /* XS'
    assert src.count(a) == 1; src = src.replace(a, 'wq_cp_wait<S - 1>();\n        /* XS')
elif inject == 3: # m1 kernel: split-K k-range off by one chunk
    a = 'c1 = (int)((uint32_t)((kb + 1) * p.kc) / (uint32_t)p.skb);'; assert src.count(a) == 1
    src = src.replace(a, 'c1 = (int)((uint32_t)((kb + 1) * p.kc) / (uint32_t)p.skb) - (kb == 0);')
elif inject == 6: # m1 kernel, NT 2: the second token tile reads x one token too far (token 9 + gid)
    a = 'const int tok = 8 * t + gid;'; assert src.count(a) == 1; src = src.replace(a, 'const int tok = 8 * t + gid + t;')
elif inject == 7: # m1 kernel, NT 2: split-K slot of the second token tile written over the first one's
    a = 'if (tl < p.m) slot[tl * 16 + wq_cfrag_row(lane, i)] = b.acc[r][t][i];'; assert src.count(a) == 1
    src = src.replace(a, 'if (tl < p.m) slot[(tl & 7) * 16 + wq_cfrag_row(lane, i)] = b.acc[r][t][i];')
elif inject == 8: # m1 kernel: tokens past m stored (rows m .. 15 of y written)
    a = 'if (tok < p.m && row < p.n) y[(size_t)tok * p.n + row] = qq::from_f<T>(val[t][i]'; assert src.count(a) == 1
    src = src.replace(a, 'if (row < p.n) y[(size_t)tok * p.n + row] = qq::from_f<T>(val[t][i]')
elif inject == 9: # xs kernel: no barrier per stage (warps read x pieces other threads have not copied yet)
    a = 'if (XS) __syncthreads();'; assert src.count(a) == 1; src = src.replace(a, '')
elif inject == 10: # xs kernel: x pieces past kx copied instead of zero-filled
    a = 'const bool ok = c_issue * KCH + 8 * pc < p.kx;'; assert src.count(a) == 1; src = src.replace(a, 'const bool ok = true;')
open(sys.argv[2], 'w').write(src)
