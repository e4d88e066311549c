"""What TLS adds to the lake's object-store traffic: the same moto_server operations over http and https
(a trustme certificate, the CA given as `tls.ca` through `storage_uri.client_options`), on 127.0.0.1.

Two moto_server processes (moto is the only S3 endpoint that installs here; a real store's latency
would dwarf both): per round, p50 of small-object GETs through pyarrow (a new client per round, keep-alive
within it, as specd's processes do), one Delta append and one Delta read (delta-rs, `certificate_path`).
Prints min/median/max over the rounds of each figure and the https/http ratios (baseline: plain http,
measured in the same run).

    python tests/bench/bench_tls_s3.py [--size N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.helpers.s3 import KEY_ID, KEY_ID_SECRET, SECRET_KEY, SECRET_KEY_SECRET, start_moto, stop_moto  # noqa: E402


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f} median {statistics.median(values):.3f} max {max(values):.3f}"


def one_round(server, ca: str | None, size: int) -> tuple[float, float, float, bool]:
    """(GET p50 ms, Delta append ms, Delta read ms, rows read back as written)."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    from deltalake import DeltaTable, write_deltalake

    from daemon.shared import storage_uri

    refs = {k: f"secret:{v[9:-1]}" if v.startswith("${secret:") else v for k, v in server.spec_options().items()}  # as composed
    options = storage_uri.client_options(refs, {"ca": ca} if ca else None)
    fs = pafs.S3FileSystem(**storage_uri.arrow_s3_kwargs(options))  # a fresh client: its first GET handshakes
    bucket = server.create_bucket(ca=Path(ca) if ca else None)
    with fs.open_output_stream(f"{bucket}/object") as stream:
        stream.write(b"x" * 4096)
    samples = []
    for _ in range(20 * size):
        start = time.perf_counter()
        with fs.open_input_stream(f"{bucket}/object") as stream:
            stream.read()
        samples.append((time.perf_counter() - start) * 1000)
    table = pa.table({"id": list(range(100 * size)), "value": [float(i) for i in range(100 * size)]})
    start = time.perf_counter()
    write_deltalake(f"s3://{bucket}/t", table, storage_options=options)
    append_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    back = DeltaTable(f"s3://{bucket}/t", storage_options=options).to_pyarrow_table()
    read_ms = (time.perf_counter() - start) * 1000
    return statistics.median(samples), append_ms, read_ms, back.num_rows == table.num_rows


def main() -> int:
    import os

    import trustme

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5, help="work per round (GETs = 20*size, rows = 100*size)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ[KEY_ID_SECRET], os.environ[SECRET_KEY_SECRET] = KEY_ID, SECRET_KEY
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        (root / "cert.pem").write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
        plain_proc, plain = start_moto(root / "plain.log")
        tls_proc, tls = start_moto(root / "tls.log", cert=root / "cert.pem", key=root / "key.pem")
        try:
            figures: dict[str, list[float]] = {}
            sound = True
            for _ in range(args.rounds):
                for label, server, bundle in (("http ", plain, None), ("https", tls, str(root / "ca.pem"))):
                    get_ms, append_ms, read_ms, ok = one_round(server, bundle, args.size)
                    sound &= ok
                    figures.setdefault(f"{label} GET p50 ms:", []).append(get_ms)
                    figures.setdefault(f"{label} Delta append ms:", []).append(append_ms)
                    figures.setdefault(f"{label} Delta read ms:", []).append(read_ms)
        finally:
            stop_moto(plain_proc)
            stop_moto(tls_proc)
    print(f"rounds: {args.rounds} size: {args.size} (moto_server on 127.0.0.1, http vs https)")
    print(f"every round read back what it wrote: {'yes' if sound else 'NO'}")
    for label, values in figures.items():
        print(f"{label} {spread(values)}")
    for what in ("GET p50 ms", "Delta append ms", "Delta read ms"):
        ratios = [s / p for s, p in zip(figures[f"https {what}:"], figures[f"http  {what}:"], strict=True)]
        added = [s - p for s, p in zip(figures[f"https {what}:"], figures[f"http  {what}:"], strict=True)]
        print(f"TLS added {what}: {spread(added)}")
        print(f"ratio {what} https/http: {spread(ratios)}")
    return 0 if sound else 1


if __name__ == "__main__":
    raise SystemExit(main())
