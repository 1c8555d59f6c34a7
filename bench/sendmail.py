"""mailhop sendmail vs msmtp, side by side on the lab's Postfix over port 465.

Both tools read the same msmtprc account (implicit TLS, AUTH, the lab's test CA) and
send the same message to the same mailbox; runs alternate between the tools so a
noisy machine slows both alike. Printed: the median wall time per message and the
peak memory (max RSS of the child process) of each tool, and mailhop's ratio to
msmtp. The machine is noisy, so only the ratios mean anything.

Aims (issue #3): time per message within 1.5x of msmtp; memory for a 200 MB
message under 64 MB.

Usage (the lab must be up: ``sudo scripts/lab.sh up``)::

    .venv/bin/python bench/sendmail.py [--runs 15] [--large-mib 200] [--large-runs 2]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import run_measured

LAB_JSON = Path(os.environ.get("MAILHOP_LAB", "/var/lib/mailhop-lab")) / "lab.json"
# The mailbox every benchmark message goes to; emptied afterwards so repeated runs
# of 200 MB messages do not fill the disk.
BENCH_USER = "dave"
# One send may take this long before the benchmark gives up on it.
SEND_TIMEOUT_SECONDS = 600


def write_config(directory: Path, lab: dict[str, object], sender: dict[str, str]) -> Path:
    config = directory / "msmtprc"
    config.write_text(
        "account bench\n"
        "host 127.0.0.1\n"
        f"port {lab['ports']['submissions']}\n"  # type: ignore[index]
        "tls on\n"
        "tls_starttls off\n"
        f"tls_trust_file {lab['ca_file']}\n"
        "auth on\n"
        f"user {sender['login']}\n"
        f"password {sender['password']}\n"
        f"from {sender['address']}\n"
        "account default : bench\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config


def write_message(path: Path, recipient: str, body_octets: int) -> None:
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\n"
    with path.open("wb") as file:
        file.write(f"To: {recipient}\nSubject: mailhop bench {body_octets}\n\n".encode())
        for _ in range(body_octets // len(line) + 1):
            file.write(line)


def compare(
    tools: dict[str, list[str]], message: Path, runs: int, label: str
) -> dict[str, tuple[float, int]]:
    times: dict[str, list[float]] = {name: [] for name in tools}
    peaks: dict[str, int] = dict.fromkeys(tools, 0)
    for _ in range(runs):
        for name, command in tools.items():
            with message.open("rb") as stdin:
                measured = run_measured(command, stdin=stdin, stdout=subprocess.DEVNULL)
            if measured.status != 0:
                raise SystemExit(f"{command[0]} failed with exit status {measured.status}")
            times[name].append(measured.seconds)
            peaks[name] = max(peaks[name], measured.usage.ru_maxrss)  # KiB
    results = {name: (statistics.median(times[name]), peaks[name]) for name in tools}
    mailhop_time, mailhop_peak = results["mailhop"]
    msmtp_time, msmtp_peak = results["msmtp"]
    print(f"\n{label}: {runs} run(s) per tool, alternating")
    print(f"  {'tool':<8} {'median time':>12} {'peak RSS':>12}")
    for name, (median, peak) in results.items():
        print(f"  {name:<8} {median * 1000:>10.1f}ms {peak / 1024:>10.1f}MB")
    print(
        f"  ratio mailhop/msmtp: time {mailhop_time / msmtp_time:.2f}x, "
        f"memory {mailhop_peak / msmtp_peak:.2f}x; mailhop peak {mailhop_peak / 1024:.1f} MB"
    )
    return results


def import_time(python: str) -> None:
    """Import cost of the sendmail path vs the interpreter alone (ratio)."""

    def best(code: str) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([python, "-c", code], check=True)
            samples.append(time.perf_counter() - started)
        return min(samples)

    bare = best("pass")
    sendmail = best(
        "import mailhop.cli.sendmail, mailhop.deliver.submit, mailhop.config, mailhop.message"
    )
    print(f"\nstart-up: python alone vs python + the sendmail path imports: {sendmail / bare:.2f}x")


def main() -> None:
    # An installed mailhop runs from bytecode (pip compiles it at install time); a
    # checkout's __pycache__ may be missing or stale (PYTHONDONTWRITEBYTECODE is
    # common in CI shells), and every process would then time the compiler too.
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "src"), quiet=1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per tool for 1 KB")
    parser.add_argument("--large-mib", type=int, default=200, help="size of the large message")
    parser.add_argument("--large-runs", type=int, default=2, help="runs per tool, large")
    arguments = parser.parse_args()
    if not LAB_JSON.exists():
        raise SystemExit(f"no lab at {LAB_JSON}: run 'sudo scripts/lab.sh up' first")
    msmtp = shutil.which("msmtp")
    if msmtp is None:
        raise SystemExit("msmtp is not installed: apt-get install msmtp")
    lab = json.loads(LAB_JSON.read_text(encoding="utf-8"))
    users = {user["name"]: user for user in lab["users"]}
    sender, recipient = users["alice"], users[BENCH_USER]
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    with tempfile.TemporaryDirectory(prefix="mailhop-bench-") as temporary:
        directory = Path(temporary)
        config = write_config(directory, lab, sender)
        mailhop = [sys.executable, "-m", "mailhop", "sendmail", "-C", str(config), "-i"]
        tools = {
            "mailhop": [*mailhop, recipient["address"]],
            "msmtp": [msmtp, "-C", str(config), recipient["address"]],
        }
        small = directory / "small.eml"
        write_message(small, recipient["address"], 1024)
        compare(tools, small, arguments.runs, "1 KB message")
        if arguments.large_runs:
            large = directory / "large.eml"
            write_message(large, recipient["address"], arguments.large_mib * 1024 * 1024)
            compare(tools, large, arguments.large_runs, f"{arguments.large_mib} MB message")
        import_time(sys.executable)
    maildir = Path(recipient["maildir"])
    for folder in ("new", "cur"):
        for path in (maildir / "Maildir" / folder, maildir / folder):
            if path.is_dir():
                for item in path.iterdir():
                    item.unlink()


if __name__ == "__main__":
    main()
