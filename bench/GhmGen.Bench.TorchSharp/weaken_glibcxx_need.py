#!/usr/bin/env python3
"""Makes a copy of TorchSharp's libLibTorchSharp.so loadable with Debian 12's libstdc++ (GLIBCXX <= 3.4.30).

    python3 bench/GhmGen.Bench.TorchSharp/weaken_glibcxx_need.py PATH/libLibTorchSharp.so [--check]

Why: TorchSharp 0.107.0's libLibTorchSharp.so was linked with GCC 13, whose <iostream> makes every
object that includes it reference the marker symbol std::ios_base_library_init() (GLIBCXX_3.4.32).
The symbol has no relocation (nothing ever binds to it), but its version stays in the file's
version-needed list (.gnu.version_r), and the dynamic loader refuses the whole library:
  libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by libLibTorchSharp.so)
An LD_PRELOAD shim that defines the symbol does not help: glibc checks each needed version
against the object named in the entry (libstdc++.so.6), not against the preloaded one.

What this does: sets VER_FLG_WEAK (0x2) on that one version-needed entry. glibc then treats a
missing GLIBCXX_3.4.32 as not fatal (dl-version.c: "weak version ... not found" is reported only
with LD_VERBOSE). Two bytes change; nothing else does.

Safety checks before anything is written (each failure exits 1 and leaves the file as it was):
  * the file is ELF64 little-endian with a .gnu.version_r entry GLIBCXX_3.4.32 of libstdc++.so.6;
  * every dynamic symbol of that version is undefined, is in ALLOWED_SYMBOLS, and no relocation
    (.rela.dyn, .rela.plt) refers to it — i.e. the loader never has to find it.
Idempotent (an already weak entry is reported and left alone). The edit is written to a temporary
file that then replaces PATH, so a hard link into the NuGet cache would be broken, never written
through; run it only on the copy in a build output folder. --check only reports.
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile

VERSION = b"GLIBCXX_3.4.32"
LIBRARY = b"libstdc++.so.6"
ALLOWED_SYMBOLS = {b"_ZSt21ios_base_library_initv"}  # std::ios_base_library_init()
VER_FLG_WEAK = 0x2
SHT_RELA, SHT_DYNSYM, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 4, 11, 0x6FFFFFFE, 0x6FFFFFFF


def fail(message: str) -> int:
    print(f"weaken_glibcxx_need: {message}", file=sys.stderr)
    return 1


def c_string(data: bytes, offset: int) -> bytes:
    return bytes(data[offset:data.index(b"\0", offset)])


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--check"]
    check_only = len(args) != len(argv)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = args[0]
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return fail(f"{path}: not an ELF64 little-endian file")
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for i in range(e_shnum):
        _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
        sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))

    verneed = [s for s in sections if s[0] == SHT_GNU_VERNEED]
    dynsym = [(i, s) for i, s in enumerate(sections) if s[0] == SHT_DYNSYM]
    versym = [s for s in sections if s[0] == SHT_GNU_VERSYM]
    if len(verneed) != 1 or len(dynsym) != 1 or len(versym) != 1:
        return fail(f"{path}: expected one .gnu.version_r, .dynsym and .gnu.version section")
    _, vn_off, _, vn_link, _ = verneed[0]
    strtab_off = sections[vn_link][1]

    # Find the Vernaux entry of VERSION under LIBRARY.
    target = None  # (file offset of the Vernaux, its flags, its version index)
    entry = vn_off
    while True:
        _, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, entry)
        aux = entry + vn_aux
        for _ in range(vn_cnt):
            _, vna_flags, vna_other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
            if c_string(data, strtab_off + vn_file) == LIBRARY and c_string(data, strtab_off + vna_name) == VERSION:
                target = (aux, vna_flags, vna_other)
            aux += vna_next
        if vn_next == 0:
            break
        entry += vn_next
    if target is None:
        print(f"weaken_glibcxx_need: {path} needs no {VERSION.decode()} of {LIBRARY.decode()}; nothing to do")
        return 0
    aux, flags, index = target

    # Which dynamic symbols carry that version, and does any relocation use them?
    dynsym_index, (_, ds_off, ds_size, ds_link, ds_entsize) = dynsym[0]
    dynstr_off = sections[ds_link][1]
    vs_off = versym[0][1]
    tagged = []
    for s in range(ds_size // ds_entsize):
        if struct.unpack_from("<H", data, vs_off + 2 * s)[0] & 0x7FFF != index:
            continue
        st_name, _, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", data, ds_off + s * ds_entsize)
        name = c_string(data, dynstr_off + st_name)
        if st_shndx != 0 or name not in ALLOWED_SYMBOLS:
            return fail(f"{path}: symbol {name.decode()} (section {st_shndx}) has version {VERSION.decode()}; "
                        f"only undefined {sorted(n.decode() for n in ALLOWED_SYMBOLS)} may: not patching")
        tagged.append((s, name))
    tagged_indices = {s for s, _ in tagged}
    for sh_type, off, size, link, entsize in sections:
        if sh_type != SHT_RELA or link != dynsym_index:
            continue
        for r in range(size // entsize):
            r_info, = struct.unpack_from("<Q", data, off + r * entsize + 8)
            if (r_info >> 32) in tagged_indices:
                return fail(f"{path}: a relocation refers to a {VERSION.decode()} symbol: not patching")

    names = ", ".join(n.decode() for _, n in tagged) or "none"
    if flags & VER_FLG_WEAK:
        print(f"weaken_glibcxx_need: {path}: {VERSION.decode()} is already a weak need (symbols: {names})")
        return 0
    if check_only:
        print(f"weaken_glibcxx_need: {path}: would mark {VERSION.decode()} weak (symbols: {names}, no relocations)")
        return 0
    struct.pack_into("<H", data, aux + 4, flags | VER_FLG_WEAK)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".weaken-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temp, os.stat(path).st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    print(f"weaken_glibcxx_need: {path}: marked the {VERSION.decode()} need of {LIBRARY.decode()} weak "
          f"(symbols of that version: {names}; no relocations)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
