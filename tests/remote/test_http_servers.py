"""The loopback servers of tests/fixtures/http_servers.py: the real `huggingface_hub` client works
against `HubServer` unchanged, `RangeServer` answers ranges as RFC 9110 says, and each hostile
mode does what it says."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from fixtures.http_servers import (
    MISBEHAVIOURS,
    OVERSEND_JUNK,
    HubRepo,
    HubServer,
    RangeServer,
    git_blob_sha1,
    parse_range,
)

CONFIG = b'{"model_type": "bert"}\n'
WEIGHTS = bytes(range(256)) * 1024  # 256 KiB
NESTED = b"\x80\x04K\x01." * 100
TAG_SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


def make_repo() -> HubRepo:
    repo = HubRepo(
        "org/model",
        {"config.json": CONFIG, "model.safetensors": WEIGHTS, "sub/dir/weights.bin": NESTED},
    )
    repo.revisions["v1.0"] = repo.commit
    repo.revisions["dev"] = TAG_SHA
    return repo


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer(repos=[make_repo()]) as server:
        yield server


# ------------------------------------------------------------------------------ HubServer + HfApi


def test_model_info_resolves_branch_tag_and_commit(hub: HubServer) -> None:
    repo = hub.repos[("model", "org/model")]
    api = HfApi(endpoint=hub.url, token=False)
    assert len(repo.commit) == 40
    assert api.model_info("org/model").sha == repo.commit
    assert api.model_info("org/model", revision="main").sha == repo.commit
    assert api.model_info("org/model", revision="v1.0").sha == repo.commit
    assert api.repo_info("org/model", revision="dev").sha == TAG_SHA
    assert api.model_info("org/model", revision=TAG_SHA).sha == TAG_SHA
    info = api.model_info("org/model", files_metadata=True)
    assert info.last_modified is not None
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == {"config.json", "model.safetensors", "sub/dir/weights.bin"}
    assert siblings["config.json"].lfs is None
    lfs = siblings["model.safetensors"].lfs
    assert lfs is not None and lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/model", revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")


def test_tree_lists_sizes_blob_ids_and_lfs_across_pages() -> None:
    with HubServer(repos=[make_repo()], page_size=2) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        commit = api.model_info("org/model").sha
        tree = list(api.list_repo_tree("org/model", revision=commit, recursive=True, expand=False))
        pages = [r for r in hub.requests if "/tree/" in r.path]
    files = {e.path: e for e in tree if not hasattr(e, "tree_id")}
    folders = {e.path for e in tree if hasattr(e, "tree_id")}
    assert folders == {"sub", "sub/dir"}
    assert len(pages) == 3  # 5 entries, 2 a page, followed through the Link header
    config = files["config.json"]
    assert config.size == len(CONFIG) and config.lfs is None
    assert config.blob_id == git_blob_sha1(CONFIG)
    weights = files["model.safetensors"]
    assert weights.size == len(WEIGHTS)
    assert weights.lfs is not None
    assert weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert weights.lfs.size == len(WEIGHTS)
    assert files["sub/dir/weights.bin"].lfs is not None
    # non-recursive listing of a folder, and a missing folder
    with HubServer(repos=[make_repo()]) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        assert [e.path for e in api.list_repo_tree("org/model", "sub")] == ["sub/dir"]
        with pytest.raises(EntryNotFoundError):
            list(api.list_repo_tree("org/model", "absent"))
        infos = api.get_paths_info("org/model", ["config.json", "sub", "absent"])
        assert [i.path for i in infos] == ["config.json", "sub"]


def test_hf_hub_download_is_byte_exact(hub: HubServer, tmp_path: Path) -> None:
    big = tmp_path / "on-disk.bin"
    big.write_bytes(b"D" * 300_000)
    repo = hub.repos[("model", "org/model")]
    repo.files["on-disk.bin"] = big
    repo.lfs.add("on-disk.bin")
    expected = {**{p: c for p, c in repo.files.items() if isinstance(c, bytes)}}
    expected["on-disk.bin"] = big.read_bytes()
    for path, content in expected.items():
        local = hf_hub_download(
            "org/model", path, endpoint=hub.url, cache_dir=tmp_path / "cache", token=False
        )
        assert Path(local).read_bytes() == content, path
    # the LFS file came from the CDN after a redirect that carries the Hub's headers
    redirects = [r for r in hub.requests if r.status == 302]
    assert {r.path.rsplit("/", 1)[-1] for r in redirects} >= {"model.safetensors", "on-disk.bin"}
    assert any(r.server == "cdn" for r in hub.requests)


def test_lfs_resolve_headers_and_range_through_redirect(hub: HubServer) -> None:
    repo = hub.repos[("model", "org/model")]
    url = hub.resolve_url("org/model", "model.safetensors")
    with httpx.Client() as client:
        head = client.head(url)
        assert head.status_code == 302
        assert head.headers["X-Repo-Commit"] == repo.commit
        assert head.headers["X-Linked-Size"] == str(len(WEIGHTS))
        sha = hashlib.sha256(WEIGHTS).hexdigest()
        assert head.headers["X-Linked-Etag"] == f'"{sha}"'
        assert head.headers["ETag"] == f'"{sha}"'
        assert head.headers["Location"].startswith(hub.cdn_url + "/")
        got = client.get(url, headers={"Range": "bytes=1000-1999"}, follow_redirects=True)
        assert got.status_code == 206
        assert got.content == WEIGHTS[1000:2000]
        assert got.headers["Content-Range"] == f"bytes 1000-1999/{len(WEIGHTS)}"
        # a regular file is served directly, with its git blob id as ETag
        direct = client.get(hub.resolve_url("org/model", "config.json"))
        assert direct.status_code == 200 and direct.content == CONFIG
        assert direct.headers["ETag"] == f'"{git_blob_sha1(CONFIG)}"'
        assert direct.headers["X-Repo-Commit"] == repo.commit
        missing = client.head(hub.resolve_url("org/model", "absent.bin"))
        assert missing.status_code == 404
        assert missing.headers["X-Error-Code"] == "EntryNotFound"
        # the CDN wants its signature, not a token
        assert client.get(head.headers["Location"].split("?")[0]).status_code == 403
    cdn = [r for r in hub.requests if r.server == "cdn"]
    assert cdn and cdn[0].range == (1000, 1999)


def test_token_is_enforced(tmp_path: Path) -> None:
    with HubServer(repos=[make_repo()], token="hf_test_secret") as hub:
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=hub.url, token=False).model_info("org/model")
        with pytest.raises(HfHubHTTPError) as wrong:
            HfApi(endpoint=hub.url, token="hf_wrong").model_info("org/model")
        assert wrong.value.response.status_code == 401
        api = HfApi(endpoint=hub.url, token="hf_test_secret")
        assert api.model_info("org/model").sha == hub.repos[("model", "org/model")].commit
        local = hf_hub_download(
            "org/model",
            "model.safetensors",
            endpoint=hub.url,
            cache_dir=tmp_path,
            token="hf_test_secret",
        )
        assert Path(local).read_bytes() == WEIGHTS
        with httpx.Client() as client:
            assert client.get(hub.resolve_url("org/model", "config.json")).status_code == 401
        # the token went to the Hub, never to the CDN
        assert all(
            ("authorization" in r.headers) == (r.server == "hub")
            for r in hub.requests
            if r.status != 401
        )


def test_hf_file_system_reads_a_range(hub: HubServer) -> None:
    fs = HfFileSystem(endpoint=hub.url, token=False, skip_instance_cache=True)
    assert fs.info("org/model/model.safetensors")["size"] == len(WEIGHTS)
    with fs.open("org/model/model.safetensors", "rb", block_size=4096) as handle:
        handle.seek(100_000)
        assert handle.read(16) == WEIGHTS[100_000:100_016]
    assert hub.bytes_sent < len(WEIGHTS) // 4


# ----------------------------------------------------------------------------------- RangeServer


DATA = bytes(i % 251 for i in range(1 << 20))


@pytest.fixture
def static() -> Iterator[RangeServer]:
    with RangeServer({"dir/model.pt": DATA, "empty.bin": b""}) as server:
        yield server


def test_range_requests(static: RangeServer) -> None:
    url = static.file_url("dir/model.pt")
    with httpx.Client() as client:
        head = client.head(url)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(DATA))
        assert head.headers["Accept-Ranges"] == "bytes"
        assert "ETag" in head.headers
        for header, start, end in (
            ("bytes=0-99", 0, 99),
            ("bytes=1000-", 1000, len(DATA) - 1),
            ("bytes=-22", len(DATA) - 22, len(DATA) - 1),
            ("bytes=10-99999999", 10, len(DATA) - 1),
        ):
            got = client.get(url, headers={"Range": header})
            assert got.status_code == 206, header
            assert got.content == DATA[start : end + 1], header
            assert got.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
        past = client.get(url, headers={"Range": f"bytes={len(DATA)}-"})
        assert past.status_code == 416
        assert past.headers["Content-Range"] == f"bytes */{len(DATA)}"
        assert client.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200
        assert client.get(url).content == DATA
        assert client.get(static.file_url("nothing")).status_code == 404
    bodies = 100 + (len(DATA) - 1000) + 22 + (len(DATA) - 10) + 2 * len(DATA)
    assert static.bytes_sent == bodies + len(b"not found")  # every body counts, a 404's too
    static.reset_counters()
    assert static.bytes_sent == 0 and static.requests == []


def test_files_on_disk_are_served(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(DATA * 3)
    with RangeServer({"big.bin": path}) as server, httpx.Client() as client:
        got = client.get(server.file_url("big.bin"), headers={"Range": "bytes=2097100-2097299"})
        assert got.status_code == 206
        assert got.content == (DATA * 3)[2097100:2097300]


def test_parse_range() -> None:
    assert parse_range("bytes=0-9") == (0, 9)
    assert parse_range("bytes=5-") == (5, None)
    assert parse_range("bytes=-5") == (-5, None)
    assert parse_range("bytes=9-0") is None
    assert parse_range("items=0-9") is None
    assert parse_range("bytes=0-1,3-4") is None
    assert parse_range(None) is None


# ------------------------------------------------------------------------------- hostile modes


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown misbehave"):
        RangeServer({}, misbehave={"explode"})
    assert {"ignore-range", "oversend", "lie-size", "redirect-loop", "stall"} <= MISBEHAVIOURS


def test_ignore_range(static: RangeServer) -> None:
    static.misbehave.add("ignore-range")
    with httpx.Client() as client:
        got = client.get(static.file_url("dir/model.pt"), headers={"Range": "bytes=0-9"})
    assert got.status_code == 200 and got.content == DATA


def test_oversend(static: RangeServer) -> None:
    static.misbehave.add("oversend")
    with httpx.Client() as client:
        got = client.get(static.file_url("dir/model.pt"), headers={"Range": "bytes=0-9"})
    assert got.status_code == 206
    assert got.headers["Content-Range"] == f"bytes 0-9/{len(DATA)}"
    assert got.content[:10] == DATA[:10] and len(got.content) == 10 + OVERSEND_JUNK


def test_lie_size(static: RangeServer) -> None:
    static.misbehave.add("lie-size")
    url = static.file_url("dir/model.pt")
    with httpx.Client() as client:
        assert client.head(url).headers["Content-Length"] == str(2 * len(DATA))
        got = client.get(url, headers={"Range": "bytes=0-9"})
        assert got.headers["Content-Range"] == f"bytes 0-9/{2 * len(DATA)}"
        assert got.content == DATA[:10]
        assert client.get(url, headers={"Range": "bytes=-10"}).status_code == 416


def test_lie_size_on_the_hub(hub: HubServer) -> None:
    hub.misbehave.add("lie-size")
    api = HfApi(endpoint=hub.url, token=False)
    tree = {e.path: e for e in api.list_repo_tree("org/model", recursive=True)}
    weights = tree["model.safetensors"]
    assert weights.size == 2 * len(WEIGHTS)
    with httpx.Client() as client:
        head = client.head(hub.resolve_url("org/model", "model.safetensors"))
    assert head.headers["X-Linked-Size"] == str(2 * len(WEIGHTS))


@pytest.mark.parametrize("kind", ["static", "hub"])
def test_redirect_loop(kind: str, static: RangeServer, hub: HubServer) -> None:
    url = static.file_url("dir/model.pt")
    if kind == "hub":
        url = hub.resolve_url("org/model", "model.safetensors")
    (static if kind == "static" else hub).misbehave.add("redirect-loop")
    with httpx.Client(max_redirects=5) as client:
        first = client.get(url)
        assert first.status_code == 302
        assert client.get(first.headers["Location"]).headers["Location"] == url
        with pytest.raises(httpx.TooManyRedirects):
            client.get(url, follow_redirects=True)


def test_stall_times_out_and_close_is_prompt() -> None:
    server = RangeServer({"f": DATA}, misbehave={"stall"}).start()
    try:
        with httpx.Client(timeout=httpx.Timeout(5.0, read=0.3)) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                client.get(server.file_url("f"))
            assert time.monotonic() - started < 2
            with client.stream("GET", server.file_url("f")) as response:
                assert response.status_code == 200  # headers arrived, the body never does
    except BaseException:
        server.close()
        raise
    started = time.monotonic()
    server.close()  # the stalled handlers wait 60 s unless closing wakes them
    assert time.monotonic() - started < 2


def test_truncate(static: RangeServer) -> None:
    static.misbehave.add("truncate")
    with httpx.Client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.get(static.file_url("dir/model.pt"))
    assert static.requests[-1].bytes_sent == len(DATA) // 2


def test_status_500_once(static: RangeServer, hub: HubServer) -> None:
    static.misbehave.add("status-500-once")
    with httpx.Client() as client:
        url = static.file_url("dir/model.pt")
        assert client.get(url).status_code == 500
        assert client.get(url).content == DATA
        static.reset_counters()
        assert client.get(url).status_code == 500
    hub.misbehave.add("status-500-once")
    with httpx.Client() as client:
        url = hub.resolve_url("org/model", "config.json")
        assert client.get(url).status_code == 500
        assert client.get(url).content == CONFIG


def test_api_modes(hub: HubServer) -> None:
    hub.misbehave.add("api-status-500-once")
    with httpx.Client() as client:
        assert client.get(f"{hub.url}/api/models/org/model").status_code == 500
        assert client.get(f"{hub.url}/api/models/org/model").status_code == 200
        # file responses are left alone by api-... modes
        assert client.get(hub.resolve_url("org/model", "config.json")).status_code == 200


def test_throttle_holds() -> None:
    payload = b"t" * 2_000_000
    with RangeServer({"p": payload}, throttle_bytes_per_s=10e6) as server, httpx.Client() as c:
        started = time.monotonic()
        got = c.get(server.file_url("p"))
        elapsed = time.monotonic() - started
    assert got.content == payload
    assert 0.15 <= elapsed < 2.0
