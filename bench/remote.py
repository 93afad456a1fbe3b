"""Remote scans: a ≥ 4 GB checkpoint over a throttled loopback Hub, scanned in place or downloaded.

    unset PYTHONDONTWRITEBYTECODE
    python bench/remote.py                     # 4 GiB checkpoint, 100 MB/s, corpus deleted after
    python bench/remote.py --size-gb 1 --throttle-mbps 50 --keep --out bench/out/remote.md

Builds under bench/corpus/remote/ (git-ignored) a model repository: config.json, tokenizer.json,
a `pytorch_model.bin` written by `torch.save` of a state dict of 512 MiB float32 tensors
(`torch.empty`, kernel-zeroed pages, so the build holds almost no RAM) and a 256 MiB
`model.safetensors`. It serves it as `bench/model` from the loopback Hugging Face
Hub-compatible server of tests/fixtures/http_servers.py (API, resolve, LFS redirect to a "CDN"
port), throttled to `--throttle-mbps` MB/s (10^6 bytes/s) shared by all connections, and
measures in one run, each in a subprocess with fresh caches:

* `modelward scan --no-store hf://bench/model` (HF_ENDPOINT set): range requests;
* `huggingface_hub.snapshot_download` of the repository, then `modelward scan --no-store` of
  the snapshot: what a user does without remote scanning;
* peers' remote modes, from bench/.venv-peers (bench/requirements-peers.txt): modelaudit
  `hf://bench/model` (it goes through huggingface_hub, which honours HF_ENDPOINT) and a plain
  URL; picklescan `--url` (it always speaks HTTPS, so it gets a TLS twin of the static server
  with a throwaway self-signed certificate passed by SSL_CERT_FILE); picklescan `--huggingface`
  is not run: its host is fixed in its source;
* `modelward scan --no-store http://127.0.0.1:PORT/pytorch_model.bin` on a plain static Range
  server.

Bytes are the body bytes the servers sent (headers excluded); requests count every request the
servers saw (Hub API, resolve, CDN). Prints a markdown table; `--out FILE` writes it too. Not a
test and not run in CI; docs/benchmarks.md ("Remote scans") has a recorded run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures import http_servers  # noqa: E402
from fixtures.http_servers import HubRepo, HubServer, RangeServer  # noqa: E402

REPO_ID = "bench/model"
TENSOR_BYTES = 512 * 2**20
SAFETENSORS_BYTES = 256 * 2**20
PEERS_BIN = BENCH / ".venv-peers" / "bin"
MODELWARD = Path(sys.executable).parent / "modelward"
QUIET_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_XET": "1",
    "PROMPTFOO_DISABLE_TELEMETRY": "1",  # modelaudit, as bench/scan/tools.py runs it
    "NO_ANALYTICS": "1",
    "CI": "1",
}


@dataclass
class Row:
    tool: str
    mode: str
    seconds: float | None = None
    bytes_sent: int | None = None
    requests: int | None = None
    exit_code: int | str | None = None
    findings: str = ""
    note: str = ""


# ------------------------------------------------------------------------------------- corpus


def build_corpus(folder: Path, size_gb: float) -> dict[str, Path]:
    """The repository's files, built once (reused while `build.json` matches)."""
    stamp = folder / "build.json"
    wanted = {"size_gb": size_gb, "tensor_bytes": TENSOR_BYTES}
    names = ["config.json", "tokenizer.json", "pytorch_model.bin", "model.safetensors"]
    built = stamp.exists() and json.loads(stamp.read_text()) == wanted
    if built and all((folder / n).exists() for n in names):
        return {n: folder / n for n in names}
    import torch
    from safetensors.torch import save_file

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = max(1, math.ceil(size_gb * 2**30 / TENSOR_BYTES))
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": 8192,
        "num_hidden_layers": count,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    vocab = {f"tok{i}": i for i in range(2000)}
    tokenizer = {"version": "1.0", "model": {"type": "WordPiece", "vocab": vocab}}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    started = time.perf_counter()
    # torch.empty of 512 MiB is a fresh mmap: zero pages, resident only once written.
    state = {
        f"encoder.layer.{i}.weight": torch.empty(TENSOR_BYTES // 4 // 8192, 8192)
        for i in range(count)
    }
    torch.save(state, folder / "pytorch_model.bin")
    del state
    save_file(
        {"lm_head.weight": torch.empty(SAFETENSORS_BYTES // 4 // 8192, 8192)},
        str(folder / "model.safetensors"),
    )
    print(f"built {folder} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    stamp.write_text(json.dumps(wanted))
    return {n: folder / n for n in names}


def lfs_digests(files: dict[str, Path]) -> dict[str, str]:
    """SHA-256 of the LFS files (what the Hub states), cached next to the corpus."""
    cache = next(iter(files.values())).parent / "sha256.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    result = {}
    for name, path in files.items():
        if not name.endswith(http_servers.LFS_SUFFIXES):
            continue
        stat = path.stat()
        key = f"{name}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in known:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(8 * 2**20):
                    digest.update(chunk)
            known[key] = digest.hexdigest()
        result[name] = known[key]
    cache.write_text(json.dumps(known))
    return result


# ------------------------------------------------------------------------------------ running


def run(
    argv: list[str], env: dict[str, str], timeout: float, cwd: Path
) -> tuple[float, int | str, str]:
    """Wall time, exit code (or "timeout"), and the output's tail."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") if isinstance(exc.stdout, bytes) else (exc.stdout or "").encode()
        return time.perf_counter() - started, "timeout", out.decode(errors="replace")[-2000:]
    seconds = time.perf_counter() - started
    return seconds, done.returncode, (done.stdout + done.stderr)[-4000:]


def modelward_findings(report: Path) -> str:
    if not report.exists():
        return "no report"
    results = json.loads(report.read_text())["results"]
    findings = [f for r in results for f in r.get("findings", [])]
    errors = sum(1 for r in results if r.get("errors"))
    rules = sorted({f"{f['rule_id']} ({f['severity']})" for f in findings})
    text = f"{len(findings)} in {len(results)} files"
    if rules:
        text += ": " + ", ".join(rules)
    if errors:
        text += f"; {errors} files with errors"
    return text


def modelaudit_findings(report: Path) -> str:
    if not report.exists():
        return "no report"
    data = json.loads(report.read_text())
    issues = data.get("issues", [])
    flagging = [i for i in issues if str(i.get("severity", "")).lower() in ("warning", "critical")]
    scanned = data.get("files_scanned", "?")
    text = f"{len(flagging)} warning+ ({len(issues)} issues) in {scanned} files"
    incomplete = [i for i in issues if (i.get("details") or {}).get("analysis_incomplete")]
    for issue in incomplete[:2]:
        where = Path(str(issue.get("location", ""))).name
        text += f"; analysis incomplete on {where}: {issue.get('message', '')}"
    return text


def measure(
    server: HubServer | RangeServer,
    row: Row,
    argv: list[str],
    env: dict[str, str],
    timeout: float,
    work: Path,
) -> str:
    server.reset_counters()
    row.seconds, row.exit_code, tail = run(argv, env, timeout, work)
    row.bytes_sent = server.bytes_sent
    row.requests = len(server.requests)
    if row.exit_code == "timeout":
        row.note = f"killed after {timeout:.0f} s"
    print(
        f"{row.tool} {row.mode}: {row.seconds:.1f} s, {row.bytes_sent} B, exit {row.exit_code}",
        file=sys.stderr,
    )
    return tail


def modelward_cmd(place: Path) -> list[str]:
    """JSON report in `place`; the results store off, so nothing is reused."""
    return [str(MODELWARD), "scan", "--no-store", "-f", "json", "-o", str(place / "r.json")]


def modelaudit_cmd(place: Path, timeout: float) -> list[str]:
    """As bench/scan/tools.py runs it (JSON, no result cache), with room for a 4 GB file."""
    return [
        str(PEERS_BIN / "modelaudit"),
        "scan",
        "--format",
        "json",
        "-o",
        str(place / "r.json"),
        "--no-cache",
        "--cache-dir",
        str(place / "ma"),
        "--max-size",
        "50GB",
        "--timeout",
        str(int(timeout)),
    ]


def tls_range_server(files: dict[str, Path], rate: float, work: Path) -> tuple[RangeServer, Path]:
    """The static server behind TLS, with a throwaway self-signed certificate for 127.0.0.1."""
    key, cert = work / "tls.key", work / "tls.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class TlsRangeServer(RangeServer):
        def _listen(self, role: str) -> str:
            handler = type(
                f"{role.title()}Handler", (http_servers._Handler,), {"owner": self, "role": role}
            )
            server = http_servers._Server(("127.0.0.1", 0), handler)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
            return f"https://127.0.0.1:{server.server_address[1]}"

    return TlsRangeServer(files, throttle_bytes_per_s=rate).start(), cert


def version(python: Path, dist: str) -> str:
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


# --------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=4.0, help="checkpoint size in GiB")
    parser.add_argument(
        "--throttle-mbps", type=float, default=100.0, help="server bandwidth in MB/s (10^6 B/s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep bench/corpus/remote afterwards")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--timeout", type=float, default=300.0, help="per-tool limit, seconds")
    parser.add_argument("--no-peers", action="store_true", help="skip picklescan and modelaudit")
    args = parser.parse_args(argv)

    corpus = BENCH / "corpus" / "remote"
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    files = build_corpus(corpus / "model", args.size_gb)
    repo = HubRepo(REPO_ID, files, lfs_sha256=lfs_digests(files))
    for path in repo.files:
        repo.meta(path)  # sizes and blob ids now, not in a timed request
    rate = args.throttle_mbps * 1e6
    total = sum(p.stat().st_size for p in files.values())
    checkpoint = files["pytorch_model.bin"].stat().st_size
    rows: list[Row] = []
    peers = not args.no_peers and (PEERS_BIN / "python").exists()
    work = Path(tempfile.mkdtemp(prefix="mw-remote-"))
    try:
        with HubServer([repo], throttle_bytes_per_s=rate) as hub:
            base = dict(os.environ, **QUIET_ENV, HF_ENDPOINT=hub.url)
            base.pop("HF_TOKEN", None)

            def fresh(name: str) -> tuple[Path, dict[str, str]]:
                place = work / name
                place.mkdir()
                env = dict(base, HF_HOME=str(place / "hf"), XDG_CACHE_HOME=str(place / "xdg"))
                return place, env

            # a. modelward, range requests
            place, env = fresh("mw-hf")
            row = Row("modelward", f"scan hf://{REPO_ID} (range requests)")
            measure(hub, row, [*modelward_cmd(place), f"hf://{REPO_ID}"], env, args.timeout, place)
            row.findings = modelward_findings(place / "r.json")
            remote = row
            rows.append(row)

            # b. download, then local scan
            place, env = fresh("dl")
            download = Row("huggingface_hub", "snapshot_download (all files)")
            script = (
                "import sys, pathlib; from huggingface_hub import snapshot_download; "
                "path = snapshot_download(sys.argv[1], cache_dir=sys.argv[2], "
                "endpoint=sys.argv[3]); pathlib.Path(sys.argv[4]).write_text(path)"
            )
            where = place / "snapshot.txt"
            tail = measure(
                hub,
                download,
                [sys.executable, "-c", script, REPO_ID, str(place / "cache"), hub.url, str(where)],
                env,
                args.timeout,
                place,
            )
            rows.append(download)
            snapshot = Path(where.read_text()) if where.exists() else None
            local = Row("modelward", "scan of the downloaded snapshot (local)")
            if snapshot is not None and snapshot.is_dir():
                hub.reset_counters()
                local.seconds, local.exit_code, _ = run(
                    [*modelward_cmd(place), str(snapshot)], env, args.timeout, place
                )
                local.bytes_sent, local.requests = hub.bytes_sent, len(hub.requests)
                local.findings = modelward_findings(place / "r.json")
            else:
                local.note = f"download failed: {tail[-300:]}"
            rows.append(local)
            shutil.rmtree(place, ignore_errors=True)

            # c. peers
            if peers:
                place, env = fresh("ma-hf")
                row = Row("modelaudit", f"scan hf://{REPO_ID} (HF_ENDPOINT)")
                ma = modelaudit_cmd(place, args.timeout)
                tail = measure(hub, row, [*ma, f"hf://{REPO_ID}"], env, args.timeout, place)
                row.findings = modelaudit_findings(place / "r.json")
                if not (place / "r.json").exists():
                    row.note = (row.note + " " + tail[-200:]).strip()
                rows.append(row)
                shutil.rmtree(place, ignore_errors=True)
                rows.append(
                    Row(
                        "picklescan",
                        f"--huggingface {REPO_ID}",
                        note="not run: cannot be pointed at a local endpoint (scanner.py "
                        "`scan_huggingface_model` builds `https://huggingface.co/api/models/...`"
                        " and `.../resolve/main/...` URLs; no option or environment variable)",
                    )
                )

        # d. a plain static Range server: the checkpoint alone
        single = {"pytorch_model.bin": files["pytorch_model.bin"]}
        with RangeServer(single, throttle_bytes_per_s=rate) as static:
            url = static.file_url("pytorch_model.bin")
            place, env = fresh("mw-url")
            row = Row("modelward", "scan http://…/pytorch_model.bin (range requests)")
            measure(static, row, [*modelward_cmd(place), url], env, args.timeout, place)
            row.findings = modelward_findings(place / "r.json")
            rows.append(row)
            if peers:
                place, env = fresh("ma-url")
                row = Row("modelaudit", "scan http://…/pytorch_model.bin")
                ma = modelaudit_cmd(place, args.timeout)
                measure(static, row, [*ma, url], env, args.timeout, place)
                row.findings = modelaudit_findings(place / "r.json")
                if not row.bytes_sent:
                    row.note = (
                        "fetches nothing: only Hugging Face, cloud-storage (S3/GCS/R2), PyTorch "
                        "Hub, JFrog and DVC URLs are remote sources to it; another URL is taken "
                        'for a local path ("No model files found to scan")'
                    )
                rows.append(row)
        if peers:
            tls, cert = tls_range_server(single, rate, work)
            try:
                place, env = fresh("ps-url")
                env["SSL_CERT_FILE"] = str(cert)
                row = Row("picklescan", "--url https://…/pytorch_model.bin (TLS twin)")
                tail = measure(
                    tls,
                    row,
                    [str(PEERS_BIN / "picklescan"), "--url", tls.file_url("pytorch_model.bin")],
                    env,
                    args.timeout,
                    place,
                )
                found = [ln for ln in tail.splitlines() if ln.startswith(("Infected", "Dangerous"))]
                row.findings = "; ".join(found) or tail.strip().splitlines()[-1][:200]
                rows.append(row)
            finally:
                tls.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(corpus, ignore_errors=True)

    load_after = os.getloadavg()
    report = render(
        rows,
        remote,
        download,
        local,
        args,
        total,
        checkpoint,
        started,
        load_before,
        load_after,
        peers,
    )
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


def render(
    rows: list[Row],
    remote: Row,
    download: Row,
    local: Row,
    args: argparse.Namespace,
    total: int,
    checkpoint: int,
    started: dt.datetime,
    before: tuple[float, ...],
    after: tuple[float, ...],
    peers: bool,
) -> str:
    def cell(value: object, fmt: str = "{}") -> str:
        return "–" if value is None else fmt.format(value)

    lines = [
        f"Repository `{REPO_ID}`: {total:,} bytes in 4 files (`pytorch_model.bin` "
        f"{checkpoint:,} bytes, `model.safetensors`, config.json, tokenizer.json), served at "
        f"{args.throttle_mbps:g} MB/s (10^6 B/s) shared by all connections.",
        "",
        "| tool | mode | wall s | bytes transferred | requests | exit | findings / note |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        text = "; ".join(x for x in (r.findings, r.note) if x)
        lines.append(
            f"| {r.tool} | {r.mode} | {cell(r.seconds, '{:.2f}')} | "
            f"{cell(r.bytes_sent, '{:,}')} | {cell(r.requests)} | {cell(r.exit_code)} | "
            f"{text} |"
        )
    lines.append("")
    if remote.seconds and download.seconds is not None and local.seconds is not None:
        both = download.seconds + local.seconds
        lines.append(
            f"- download + local scan: {both:.2f} s ({download.seconds:.2f} + "
            f"{local.seconds:.2f}) = **{both / remote.seconds:.1f}×** modelward's remote "
            f"scan ({remote.seconds:.2f} s)"
        )
    if remote.bytes_sent and download.bytes_sent:
        lines.append(
            f"- bytes: download {download.bytes_sent:,} ÷ remote scan {remote.bytes_sent:,} = "
            f"**{download.bytes_sent / remote.bytes_sent:,.0f}×**"
        )
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = f"modelward {version(Path(sys.executable), 'modelward')}, huggingface_hub " + (
        version(Path(sys.executable), "huggingface_hub")
    )
    if peers:
        versions += (
            f"; peers: modelaudit {version(PEERS_BIN / 'python', 'modelaudit')}, picklescan "
            f"{version(PEERS_BIN / 'python', 'picklescan')}"
        )
    lines += [
        f"- machine: {platform.platform()}, {cpus} CPUs, {mem:.0f} GiB RAM, Python "
        f"{platform.python_version()}; load average before {before[0]:.2f} / "
        f"{before[1]:.2f} / {before[2]:.2f}, after {after[0]:.2f} / {after[1]:.2f} / "
        f"{after[2]:.2f}; {started:%Y-%m-%d %H:%M} UTC",
        f"- {versions}",
    ]
    if not peers:
        lines.append("- peers not measured (--no-peers, or no bench/.venv-peers)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
