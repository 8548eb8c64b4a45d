"""A locked storage proxy: TLS (``--tls-cert/--tls-key``, clients ``grpcs://`` with ``$TUNER_PROXY_CA``) and a
shared token (``--token-file`` / ``$TUNER_PROXY_TOKEN``) on every call of both of its services.

- Refused before serving (exit 2, one line): a port out of 1-65535; a non-loopback ``--host`` without TLS
  and a token (unless ``--insecure``); unusable token or certificate files.
- Refused clients, each against a real proxy process: no token, a wrong token, a CA that did not sign the
  proxy's certificate, plain text against TLS. Each gets one clear line (exit 2), the proxy logs one line
  naming the peer, and the database is unchanged.
- The tiny grid (optimize with 2 workers, status, export) through the locked proxy: every cell COMPLETE.
  (The proxy killed and restarted mid-study, locked: tests/storage/test_proxy.py.)
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from _pgcluster import free_port
from _tiny import env_with_repo, unique, write_grid_study
from _tls import TEST_TOKEN, make_pki
from test_end_to_end_storages import grid_commands
from test_proxy import start_proxy_cli, stop
from test_service import run_cli
from tuner.cli import main
from tuner.storage import open_storage

PROXY_ENV = ("TUNER_PROXY_TOKEN", "TUNER_PROXY_TOKEN_FILE", "TUNER_PROXY_CA")


def client_env(**values: str) -> dict:
    """The environment of a client process: only the proxy settings in ``values``."""
    env = env_with_repo()
    for key in PROXY_ENV:
        env.pop(key, None)
    env.update(values)
    return env


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------ refused before serving (in-process)
@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_port_out_of_range_is_one_line_and_exit_2(port, capsys):
    assert main(["storage-proxy", "--port", port]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: tuner storage-proxy: argument --port: .*use 1 to 65535; see 'tuner storage-proxy "
                        r"--help'\n", err), err


def test_non_loopback_bind_needs_tls_and_token_or_insecure(tmp_path, monkeypatch, capsys):
    for key in PROXY_ENV:
        monkeypatch.delenv(key, raising=False)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    pki = make_pki(tmp_path / "pki")
    tls = ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    cases = [([], "without TLS and without a token"), (tls, "without a token")]
    for extra, missing in cases:  # refused before anything is opened or bound
        assert main(["storage-proxy", "--storage", db, "--host", "0.0.0.0", "--port", str(free_port()), *extra]) == 2
        err = capsys.readouterr().err
        assert err == (f"error: storage-proxy --host 0.0.0.0 would serve every study to the network {missing}; give "
                       "--tls-cert FILE --tls-key FILE and a token ($TUNER_PROXY_TOKEN or --token-file FILE), bind "
                       "--host 127.0.0.1 (and use an SSH tunnel), or pass --insecure to serve it anyway\n"), err
    monkeypatch.setenv("TUNER_PROXY_TOKEN", TEST_TOKEN)  # TLS and a token, but no such address here: bind fails
    assert main(["storage-proxy", "--storage", db, "--host", "192.0.2.1", "--port", str(free_port()), *tls]) == 2
    assert capsys.readouterr().err.startswith("error: cannot listen on 192.0.2.1:")
    assert not (tmp_path / "p.db").exists()


def test_unusable_token_and_certificate_files_are_one_line(tmp_path, monkeypatch, capsys):
    for key in PROXY_ENV:
        monkeypatch.delenv(key, raising=False)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    pki = make_pki(tmp_path / "pki")
    short = tmp_path / "short"
    short.write_text("abc\n")
    cases = [
        (["--token-file", str(tmp_path / "missing")], r"error: cannot read the proxy token from --token-file .*missing"),
        (["--token-file", str(short)], r"error: the proxy token from --token-file .*short has 3 characters; use 16 or more"),
        (["--tls-cert", str(pki.cert)], r"error: give both --tls-cert FILE and --tls-key FILE"),
        (["--tls-cert", str(pki.key), "--tls-key", str(pki.key)], r"error: cannot serve TLS with --tls-cert .*server\.key"),
        (["--tls-cert", str(pki.cert), "--tls-key", str(tmp_path / "nokey")], r"error: --tls-key .*nokey: No such file"),
    ]
    for extra, pattern in cases:
        assert main(["storage-proxy", "--storage", db, "--port", str(free_port()), *extra]) == 2
        err = capsys.readouterr().err
        assert re.match(pattern, err) and err.count("\n") == 1, err


# ------------------------------------------------------------------ a locked proxy process
@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A proxy serving TLS with a token file, over an SQLite database that holds one study of 3 trials."""
    import optuna

    folder = tmp_path_factory.mktemp("locked")
    pki = make_pki(folder / "pki")
    token_file = folder / "token"
    token_file.write_text(TEST_TOKEN + "\n")
    db = f"sqlite:///{folder / 'studies.db'}"
    handle = open_storage(db, heartbeat_interval=None, grace_period=None)
    try:
        optuna.create_study(storage=handle.storage, study_name="kept").optimize(lambda t: t.suggest_float("x", 0, 1),
                                                                                n_trials=3)
    finally:
        handle.close()
    port = free_port()
    log = folder / "proxy.log"
    saved = {key: os.environ.pop(key) for key in PROXY_ENV if key in os.environ}
    try:
        proxy = start_proxy_cli(db, port, extra=("--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
                                                 "--token-file", str(token_file)), log=log)
    finally:
        os.environ.update(saved)
    try:
        yield {"db": db, "pki": pki, "port": port, "log": log, "token_file": token_file, "folder": folder}
    finally:
        stop(proxy)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def snapshot(db: str) -> list:
    """Every study of ``db`` with its trials, read from the database itself."""
    handle = open_storage(db, heartbeat_interval=None, grace_period=None)
    try:
        storage = handle.storage
        return [(s.study_name, [(t.number, t.state.name, t.value, t.params, t.user_attrs, t.system_attrs)
                                for t in storage.get_all_trials(s._study_id)])
                for s in storage.get_all_studies()]
    finally:
        handle.close()


def new_log_lines(log: Path, start: int, want: str, timeout: float = 10.0) -> list[str]:
    """The proxy's log lines after byte ``start``, waiting up to ``timeout`` s for one that holds ``want``."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text()[start:].splitlines()
        if any(want in line for line in lines) or time.monotonic() > deadline:
            return lines


BAD_CLIENTS = {
    "no-token": (
        "grpcs", lambda pki: {"TUNER_PROXY_CA": str(pki.ca)},
        "error: the storage proxy at grpcs://127.0.0.1:{port} refused the call: no token was sent; set "
        "$TUNER_PROXY_TOKEN or $TUNER_PROXY_TOKEN_FILE to the proxy's token",
        r"WARNING tuner\.storage\._proxy: refused a call to /tuner\.TunerProxy/Info from 127\.0\.0\.1:\d+: no token "
        r"\(the client must set \$TUNER_PROXY_TOKEN to this proxy's token\)"),
    "wrong-token": (
        "grpcs", lambda pki: {"TUNER_PROXY_CA": str(pki.ca), "TUNER_PROXY_TOKEN": "not-the-token-0123456789"},
        "error: the storage proxy at grpcs://127.0.0.1:{port} refused the call: wrong token; set "
        "$TUNER_PROXY_TOKEN or $TUNER_PROXY_TOKEN_FILE to the proxy's token",
        r"WARNING tuner\.storage\._proxy: refused a call to /tuner\.TunerProxy/Info from 127\.0\.0\.1:\d+: "
        r"wrong token"),
    "other-ca": (
        "grpcs", lambda pki: {"TUNER_PROXY_CA": str(pki.other_ca), "TUNER_PROXY_TOKEN": TEST_TOKEN},
        "error: cannot open storage grpcs://127.0.0.1:{port}: the proxy's TLS certificate is not signed by the CA "
        "in $TUNER_PROXY_CA ({other_ca}) (CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate); "
        "set $TUNER_PROXY_CA to the CA file that signed the proxy's certificate",
        r"WARNING tuner\.storage\._proxy: refused a TLS connection from 127\.0\.0\.1:\d+: the client (hung up during "
        r"the TLS handshake|does not trust this proxy's certificate).*\$TUNER_PROXY_CA"),
    "plain-text": (
        "grpc", lambda pki: {"TUNER_PROXY_TOKEN": TEST_TOKEN},
        "error: the storage proxy at grpc://127.0.0.1:{port} refused the connection: it serves TLS only; use "
        "grpcs://127.0.0.1:{port} (with $TUNER_PROXY_CA naming the CA file that signed its certificate)",
        r"WARNING tuner\.storage\._proxy: refused a plain-text gRPC \(grpc://\) connection from 127\.0\.0\.1:\d+: "
        r"this storage proxy serves TLS only \(clients use grpcs://\)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_CLIENTS))
def test_bad_client_is_refused_in_one_line_logged_and_changes_nothing(case, locked, tiny_model_dir, tiny_data_dir,
                                                                      tmp_path):
    scheme, env_of, client_line, server_pattern = BAD_CLIENTS[case]
    pki, port, log = locked["pki"], locked["port"], locked["log"]
    study = write_grid_study(tmp_path, unique("refused"), tiny_model_dir, tiny_data_dir, losses=("cos_mse",),
                             datasets=("stsb",))
    before, start = snapshot(locked["db"]), len(log.read_text())
    began = time.monotonic()
    result = run_cli(["optimize", "--study", str(study), "--storage", f"{scheme}://127.0.0.1:{port}"], tmp_path,
                     timeout=120, env=client_env(**env_of(pki)))
    took = time.monotonic() - began
    assert result.returncode == 2, result.stderr[-3000:]
    assert one_error_line(result.stderr) == client_line.format(port=port, other_ca=pki.other_ca)
    assert took < 60, f"refused only after {took:.0f}s"
    lines = new_log_lines(log, start, "refused")
    assert lines and all(re.fullmatch(server_pattern, line) for line in lines), lines
    assert snapshot(locked["db"]) == before


@pytest.mark.slow
def test_tiny_grid_through_the_locked_proxy(locked, tiny_model_dir, tiny_data_dir, tmp_path):
    pki, port, log = locked["pki"], locked["port"], locked["log"]
    start = len(log.read_text())
    env = client_env(TUNER_PROXY_CA=str(pki.ca), TUNER_PROXY_TOKEN_FILE=str(locked["token_file"]))
    grid_commands(tmp_path, f"grpcs://127.0.0.1:{port}", tiny_model_dir, tiny_data_dir, env=env, direct=locked["db"])
    assert "refused" not in log.read_text()[start:], log.read_text()[start:]
