#!/usr/bin/env python3
"""SASS instructions per steady-state k-loop stage of gemm_wq.cu's skinny kernels (wq_m1_kernel,
wq_gemm_kernel), from a listing made by dump.sh. A path walk: from the N first `DEPBAR.LE SB0` (stage
waits) through the full-stage cp.async issue, into the whole-chunk ("FAST") block, up to the next
stage wait; short forward branches over a group change (unpredicated FFMA, < 80 instructions) are
taken, i.e. counted as not executed (add their size per group change: printed as "skipped").
Prints instructions per HMMA (= per 16x16 weight tile and n-tile).
  hotloop.py listing.s [N stages] [-v] [-t ADDR,..: take these branches] [-n ADDR,..: fall through]
Used for the counts in docs/cuda.md; a heuristic: check the -v path by eye for a new kernel."""
import re,sys,collections
L=[l.strip() for l in open(sys.argv[1])]
ins=[]
for l in L:
    m=re.match(r'/\*([0-9a-f]+)\*/ (.*);',l)
    if m: ins.append((int(m.group(1),16),m.group(2)))
idx={a:i for i,(a,_) in enumerate(ins)}
def target(t):
    m=re.search(r'BRA (?:\S+, )?0x([0-9a-f]+)',t); return int(m.group(1),16) if m else None
def two_pred(t): return re.search(r'BRA !?P\d, 0x',t) is not None
res=[]
TAKE={int(x,16) for x in sys.argv[sys.argv.index('-t')+1].split(',')} if '-t' in sys.argv else set()
NOTT={int(x,16) for x in sys.argv[sys.argv.index('-n')+1].split(',')} if '-n' in sys.argv else set()
skipped=[]
for s0 in [i for i,(a,t) in enumerate(ins) if t.startswith('DEPBAR.LE SB0')][:int(sys.argv[2]) if len(sys.argv)>2 else 1]:
    path=[]; i=s0; steps=0; phase='head'
    while steps<3000:
        steps+=1
        a,t=ins[i]; path.append((a,t,phase))
        if i!=s0 and t.startswith('DEPBAR.LE SB0'): path.pop(); break
        if t.startswith('EXIT'): break
        if 'BRA' in t:
            tg=target(t)
            if not t.startswith('@'): i=idx[tg]; continue
            if phase=='head':
                if two_pred(t): i=idx[tg]; phase='fast'; continue
                i+=1; continue
            if a in TAKE: i=idx[tg]; continue
            if a in NOTT: i+=1; continue
            rng=ins[i+1:idx[tg]] if tg>a else []
            if tg>a and len(rng)<80 and any('FFMA' in x[1] and not x[1].startswith('@') for x in rng):
                skipped.append((a,len(rng))); i=idx[tg]; continue
        i+=1
    res.append(path)
print('skipped cold blocks (addr, size):', [(hex(a),n) for a,n in skipped])
for path in res:
    nh=sum('HMMA' in t for a,t,p in path)
    head=sum(p=='head' for a,t,p in path)
    c=collections.Counter()
    for a,t,p in path:
        op=re.sub(r'^@!?P\w+ ','',t).split()[0].split('.')[0]
        if t.startswith('@') and 'BRA' not in t: op='pred:'+op
        c[op]+=1
    print(f"stage at {path[0][0]:#x}: {len(path)} instr ({head} head), {nh} HMMA -> {len(path)/nh:.2f} per HMMA")
    print("   ", ' '.join(f"{k}:{v}" for k,v in c.most_common()))
    if '-v' in sys.argv:
        for a,t,p in path: print(f"  {p} {a:#06x} {t}")
