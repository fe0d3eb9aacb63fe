"""Body grammar for kernel messages about file systems and NFS (tag ``kernel``).

BNF::

    kernel  ::= [uptime] (fs_msg | nfs_msg | text)
    uptime  ::= "[" *SP SECONDS "." MICROS "]" [SP]                  -> uptime
    fs_msg  ::= FS [SP LEVEL] SP "(" ["device" SP] DEVICE "):" SP detail
                                   -> fs (lower case, no "-fs"), fs_level, device, detail
    FS      ::= NAME "-fs" | "XFS" | "BTRFS" | "F2FS" | "NILFS" | "OCFS2" | "GFS2" | ...
    nfs_msg ::= ("nfs" | "NFS") ":" SP "server" SP SERVER SP ("not responding" | "OK")
                ["," SP detail]           -> nfs_server, nfs_state, detail

Examples: ``EXT4-fs (vda1): Remounting filesystem read-only`` gives fs=ext4, device=vda1;
``EXT4-fs error (device sda1): ext4_find_entry:1455: ...`` adds fs_level=error;
``nfs: server 10.1.1.1 not responding, still trying`` gives nfs_server and
nfs_state=``not responding``. Other kernel text gives only ``uptime`` when it has one.
"""

from __future__ import annotations

import re

import pyparsing as pp

from pipeline.grammars.common import end, fields_action, message, parse_fields

_FS_NAMES = r"XFS|BTRFS|F2FS|NILFS|OCFS2|GFS2|JFS|JBD2|SQUASHFS|EROFS|ntfs3|exFAT|UDF|ISOFS"

uptime = (
    pp.Regex(r"\[ *(?P<uptime>\d+\.\d+)\]", as_match=True)
    .set_name("[uptime]")
    .set_parse_action(fields_action())
)

fs_msg = (
    pp.Regex(
        rf"(?:(?P<fs>[A-Za-z][A-Za-z0-9]*)-fs|(?P<fs__2>{_FS_NAMES}))"
        r"(?: (?P<fs_level>[a-z]+))? \((?:device )?(?P<device>[^()\s]+)\): (?P<detail>(?s:.*\S))",
        as_match=True,
    )
    .set_name("file system message")
    .set_parse_action(fields_action())
)

nfs_msg = (
    pp.Regex(
        r"(?:nfs|NFS): server (?P<nfs_server>\S+) (?P<nfs_state>not responding|OK)"
        r"(?:, (?P<detail>(?s:.*\S)))?",
        as_match=True,
    )
    .set_name("NFS server message")
    .set_parse_action(fields_action())
)

KERNEL = (
    (pp.Opt(uptime) + pp.Opt(fs_msg | nfs_msg) + pp.Opt(message.copy().suppress()) + end)
    .parse_with_tabs()
    .set_name("kernel message")
)


#: a cheap test run first: most kernel messages are about neither file systems nor NFS.
_WORTH_PARSING = re.compile(rf"\s*(?:\[ *\d+\.\d+\]|[A-Za-z0-9]+-fs|{_FS_NAMES}|nfs:|NFS:)")


def parse_kernel(text: str) -> dict[str, str]:
    """Fields of a kernel message; {} when it has neither an uptime nor a known body."""
    if not _WORTH_PARSING.match(text):
        return {}
    out = parse_fields(KERNEL, text.strip())
    if "fs" in out:
        out["fs"] = out["fs"].lower()
    return out
