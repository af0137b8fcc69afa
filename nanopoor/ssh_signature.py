"""signatures made and checked with OpenSSH's `ssh-keygen -Y sign | find-principals | verify`.

this is the mechanism git uses for signed commits: each person holds an ed25519 key pair, the
repository keeps a plain-text allowed_signers file of trusted public keys (one line each: a
principal, the namespaces it may sign for, its public key), and a signature is checked offline
by a program that ships with ssh on Linux, macOS and Colab alike. it needs no python dependency,
and anyone can check a signature with ssh-keygen alone, without this project's code.

a signature is made for one namespace: one made for anything else (a git commit, a file signed
for another purpose) never verifies here."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from nanopoor.errors import UserError

NAMESPACE = "nanopoor-reproduction"
TIMEOUT_S = 30
MISSING = ("ssh-keygen not found: install OpenSSH's client (Debian/Ubuntu: apt-get install openssh-client; "
           "it ships with macOS) to sign or check reproductions")


class SignatureError(Exception):
    """a signature that does not verify against the allowed signers; the message says why."""


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise UserError(MISSING)
    return found


def _run(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ssh_keygen(), *args], input=data, capture_output=True, timeout=TIMEOUT_S)


def _said(proc: subprocess.CompletedProcess) -> str:
    """ssh-keygen's last line on stderr, for a message."""
    lines = [line.strip() for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def sign(data: bytes, key: Path) -> str:
    """the armored signature of data by the private key at `key`, for NAMESPACE."""
    key = Path(key)
    if not key.is_file():
        raise UserError(f"no private key at {key}: pass the private half of an ed25519 key "
                        f"(`ssh-keygen -t ed25519 -f {key}` makes one; docs/reproducers.md)")
    proc = _run(["-Y", "sign", "-f", str(key), "-n", NAMESPACE], data)
    text = proc.stdout.decode(errors="replace")
    if proc.returncode != 0 or "BEGIN SSH SIGNATURE" not in text:
        if b"are too open" in proc.stderr:   # ssh refuses a private key others can read
            raise UserError(f"ssh-keygen will not use {key}: others can read it; run `chmod 600 {key}` and sign again")
        raise UserError(f"ssh-keygen could not sign with {key}: {_said(proc)}")
    return text


def verify(data: bytes, signature: str, allowed_signers: Path) -> str:
    """the principal of allowed_signers whose key made `signature` over exactly `data` for NAMESPACE;
    SignatureError when there is none."""
    allowed_signers = Path(allowed_signers)
    if not allowed_signers.is_file():
        raise SignatureError(f"there is no {allowed_signers.as_posix()}, so no signer is trusted")
    with tempfile.TemporaryDirectory(prefix="nanopoor-sig-") as tmp:
        sig = Path(tmp) / "signature"
        sig.write_text(signature)
        found = _run(["-Y", "find-principals", "-s", str(sig), "-f", str(allowed_signers)])
        principals = found.stdout.decode(errors="replace").split() if found.returncode == 0 else []
        if not principals:
            if "SSH SIGNATURE" not in signature or "parse signature" in _said(found) or "armor" in _said(found):
                raise SignatureError("it is not an SSH signature")
            raise SignatureError(f"it was made by a key that is not in {allowed_signers.as_posix()}")
        for principal in principals:
            proc = _run(["-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", NAMESPACE, "-s", str(sig)], data)
            if proc.returncode == 0:
                return principal
    raise SignatureError(f"the key of {', '.join(principals)} signed other bytes, or for another namespace than {NAMESPACE}")
