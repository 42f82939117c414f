#!/bin/bash
# dump.sh obj.o MANGLED_NAME out.s [arch]: one kernel's SASS as "/*addr*/ INSTR;" lines (for hotloop.py).
# cuobjdump: pip install --target /tmp/tritonpkg triton (CUOBJDUMP overrides the path).
${CUOBJDUMP:-/tmp/tritonpkg/triton/backends/nvidia/bin/cuobjdump} -sass ${4:+-arch $4} -fun "$2" "$1" | grep -v '^\s*/\* 0x' | sed -E 's@/\* 0x[0-9a-f]{16} \*/@@; s/ +;/;/' | awk '{$1=$1; print}' | grep '^/\*' > "$3"
wc -l < "$3"
