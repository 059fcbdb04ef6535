"""``visret serve``: the JSON API and the pages, on a real index with real images (FastAPI's test
client); bad requests get a clear 4xx; the server follows the index as other processes write it."""

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import visret
from visret.serve.app import create_app

VISRET = str(Path(sys.executable).with_name("visret"))


@pytest.fixture(scope="module")
def client(digits_index):
    return TestClient(create_app(digits_index), base_url="http://127.0.0.1")


def png_bytes(path) -> bytes:
    return Path(path).read_bytes()


def test_info_and_entries_describe_the_index(client, digits_index):
    info = client.get("/api/info").json()
    assert info["count"] == 150 and info["extractor"]["name"] == "hog" and info["factory"] == "Flat"
    assert info["classes"] == {str(d): 15 for d in range(10)}
    threes = client.get("/api/entries", params={"label": "3", "limit": 10}).json()
    assert threes["total"] == 15 and len(threes["entries"]) == 10 and {e["label"] for e in threes["entries"]} == {"3"}
    rest = client.get("/api/entries", params={"label": "3", "offset": 10, "limit": 10}).json()["entries"]
    assert len(rest) == 5 and not {e["id"] for e in rest} & {e["id"] for e in threes["entries"]}
    assert set(threes["entries"][0]) == {"id", "path", "label", "sha256", "added_at"}


def test_a_query_upload_answers_like_visret_query_json(client, digits_index, digits, cli):
    image = sorted((digits / "train" / "7").iterdir())[0]
    answer = client.post("/api/query", files={"image": ("q.png", png_bytes(image), "image/png")}, data={"k": "4"}).json()
    command = json.loads(cli("query", image, "--index", digits_index, "-k", "4", "--json").stdout)
    assert answer[0]["neighbors"] == command[0]["neighbors"] and answer[0]["prediction"] == command[0]["prediction"] == "7"
    assert answer[0]["neighbors"][0]["path"] == str(image) and answer[0]["neighbors"][0]["distance"] < 1e-4


def test_similar_leaves_the_entry_out_and_files_are_served_by_id(client, digits_index):
    entry = client.get("/api/entries", params={"limit": 1}).json()["entries"][0]
    similar = client.get(f"/api/similar/{entry['id']}", params={"k": 5}).json()
    assert len(similar["neighbors"]) == 5 and entry["id"] not in [n["id"] for n in similar["neighbors"]]
    distances = [n["distance"] for n in similar["neighbors"]]
    assert distances == sorted(distances) and distances[0] > 0
    thumb = client.get(f"/thumb/{entry['id']}")
    assert thumb.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(thumb.content)).size) <= 160
    full = client.get(f"/image/{entry['id']}")  # decoded and encoded again: the same pixels, never the file's bytes
    assert full.headers["content-type"] == "image/png"
    served, original = (np.asarray(Image.open(source).convert("RGB")) for source in (io.BytesIO(full.content), entry["path"]))
    np.testing.assert_array_equal(served, original)


def test_a_file_changed_or_relinked_since_indexing_is_never_served(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / name)
    deep = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)  # 16-bit grey, 0..61,380
    Image.fromarray(deep).save(folder / "d.png")
    visret.build_index(folder, "color-hist", tmp_path / "ix", workers=1).close()
    secret = tmp_path / "token"
    secret.write_text("s3cr3t")
    secret.chmod(0o600)
    with TestClient(create_app(tmp_path / "ix"), base_url="http://127.0.0.1") as client:
        ids = {Path(e["path"]).name: e["id"] for e in client.get("/api/entries").json()["entries"]}
        shown = Image.open(io.BytesIO(client.get(f"/image/{ids['d.png']}").content))
        assert np.ptp(np.asarray(shown.convert("L"))) > 200  # a 16-bit image is scaled, not shown blank
        (folder / "a.png").write_text("<html><script>alert(1)</script></html>")
        (folder / "b.png").unlink()
        (folder / "b.png").symlink_to(secret)
        for name in ("a.png", "b.png"):
            for route in ("image", "thumb"):
                response = client.get(f"/{route}/{ids[name]}")
                assert response.status_code == 404 and "changed since it was indexed" in response.text
                assert b"s3cr3t" not in response.content and b"<script>" not in response.content
        assert client.get(f"/image/{ids['c.png']}").status_code == 200


@pytest.mark.parametrize("path", [
    "/image/..%2F..%2Fetc%2Fpasswd", "/thumb/%2Fetc%2Fpasswd", "/image/%2e%2e", "/image/-1", "/image/99999",
    "/image/1.0", "/entry/..%2Fmanifest.json", "/thumb/0x1", "/api/similar/etc%2Fpasswd", "/search?id=../manifest.json",
    "/manifest.json", "/static/../manifest.json", "/image/%C2%B2", "/thumb/%D9%A3",
])
def test_no_request_path_is_opened(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert "Traceback" not in response.text and "root:" not in response.text


def test_a_symbolic_link_planted_next_to_the_index_is_not_reachable(client, digits_index, tmp_path):
    link = digits_index / "passwd"
    try:
        os.symlink("/etc/passwd", link)
        assert client.get("/passwd").status_code == 404 and client.get("/image/passwd").status_code == 404
    finally:
        link.unlink(missing_ok=True)


def test_bad_uploads_get_a_clear_4xx(digits_index, digits):
    small = TestClient(create_app(digits_index, max_upload=2000, max_pixels=10_000), base_url="http://127.0.0.1")
    good = png_bytes(sorted((digits / "test" / "1").iterdir())[0])
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(big, format="PNG")
    bomb = io.BytesIO()
    Image.new("L", (200, 200)).save(bomb, format="PNG")
    cases = [
        (b"this is text, not pixels", 400, "not a readable image"),
        (good[: len(good) // 2], 400, "not a readable image"),
        (b"", 400, "the upload is empty"),
        (big.getvalue(), 413, "larger than 2000 bytes"),
        (bomb.getvalue(), 400, "not a readable image"),
    ]
    for data, status, message in cases:
        response = small.post("/api/query", files={"image": ("x.png", data, "image/png")})
        assert response.status_code == status and message in response.json()["detail"], (message, response.text)
    assert small.post("/api/query", files={"image": ("x.png", good, "image/png")}, data={"k": "0"}).status_code == 400
    assert small.post("/api/query").status_code == 422
    assert small.post("/api/query", content=b"x" * 100_000, headers={"content-type": "multipart/form-data; boundary=b"}).status_code == 413
    assert small.get("/api/entries", params={"offset": 10**20}).status_code == 422
    page = small.post("/search", files={"image": ("x.png", b"junk", "image/png")})
    assert page.status_code == 400 and "<h1>400</h1>" in page.text and "Traceback" not in page.text


def test_the_server_is_read_only(client, digits_index):
    before = (digits_index / "manifest.json").read_bytes()
    methods = {m for route in client.app.routes for m in getattr(route, "methods", ())}
    assert methods <= {"GET", "HEAD", "POST"}
    posts = {route.path for route in client.app.routes if "POST" in getattr(route, "methods", ())}
    assert posts == {"/api/query", "/search"}
    for method in ("put", "delete", "patch"):
        assert getattr(client, method)("/api/entries").status_code == 405
    assert (digits_index / "manifest.json").read_bytes() == before


def test_pages_browse_filter_search_and_evaluate(client, digits):
    overview = client.get("/", params={"label": "4"})
    assert overview.status_code == 200 and "4: 15 images" in overview.text and overview.text.count('class="tile"') == 15
    upload = client.post("/search", files={"image": ("q.png", png_bytes(sorted((digits / "train" / "2").iterdir())[0]), "image/png")})
    assert upload.status_code == 200 and "k-NN prediction: <b>2</b>" in upload.text and 'data-rank="1" data-distance="0' in upload.text
    entry = client.get("/api/entries", params={"label": "5", "limit": 1}).json()["entries"][0]
    more = client.get("/search", params={"id": entry["id"], "k": 6})
    assert more.status_code == 200 and more.text.count('data-rank="') == 6 and ("correct" in more.text or "wrong" in more.text)
    assert entry["path"] in client.get(f"/entry/{entry['id']}").text
    evaluation = client.get("/evaluation")
    assert evaluation.status_code == 200 and "accuracy" in evaluation.text and "data:image/png;base64," in evaluation.text
    live = client.app.state.live
    assert live.cached("evaluation", lambda index: None) is not None  # computed once for this generation


def test_the_server_follows_the_index_while_another_writer_changes_it(digits, tmp_path):
    index = tmp_path / "ix"
    visret.build_index(digits / "train", "hog", index, params={"size": 32, "pixels_per_cell": 4}, workers=1).close()
    client = TestClient(create_app(index), base_url="http://127.0.0.1")
    assert client.get("/api/info").json()["count"] == 150
    query = {"image": ("q.png", png_bytes(sorted((digits / "test" / "0").iterdir())[0]), "image/png")}
    failures, stop = [], threading.Event()

    def keep_querying():
        while not stop.is_set():
            for response in (client.post("/api/query", files=query), client.get("/api/entries", params={"limit": 5}), client.get("/thumb/0")):
                if response.status_code not in (200, 404):
                    failures.append((response.status_code, response.text))

    reader = threading.Thread(target=keep_querying)
    reader.start()
    try:
        visret.add_images([digits / "test"], index, workers=1)
        after_add = client.get("/api/info").json()["count"]
        visret.remove_images([digits / "test" / "0"], index)
        after_remove = client.get("/api/info").json()["count"]
    finally:
        stop.set()
        reader.join()
    assert (after_add, after_remove) == (200, 195) and failures == []
    added = client.get("/api/entries", params={"label": "0", "limit": 100}).json()
    assert added["total"] == 15 and all("/train/" in e["path"] for e in added["entries"])


def test_a_running_server_holds_about_one_huge_decode_however_many_clients_send_one(digits_index, project_env):
    """Uploads over the pixel budget decode one at a time, and what each frees goes back to the system:
    glibc would otherwise keep every thread's freed image (8.4 GB for 12 clients of 88 Mpx)."""
    import re
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    out = io.BytesIO()
    Image.new("RGB", (7_000, 7_000), (40, 90, 160)).save(out, format="PNG")  # 49 Mpx: the whole budget
    png = out.getvalue()

    def growth_mib(clients: int) -> int:
        server = subprocess.Popen([VISRET, "serve", "--index", str(digits_index), "--port", "0"], stderr=subprocess.PIPE, text=True, env=project_env)
        try:
            address = server.stderr.readline().split(" at ")[1].split()[0]
            peak = lambda: int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{server.pid}/status").read_text()).group(1)) // 1024  # noqa: E731
            idle = peak()
            with ThreadPoolExecutor(clients) as pool:
                codes = list(pool.map(lambda _: httpx.post(address + "api/query", files={"image": ("big.png", png)}, timeout=300).status_code, range(clients)))
            assert codes == [200] * clients
            return peak() - idle
        finally:
            server.terminate()
            server.wait(timeout=30)

    one, six = growth_mib(1), growth_mib(6)
    assert six < 2 * one, (one, six)


def test_visret_serve_binds_loopback_prints_its_address_and_answers(digits_index, project_env):
    import httpx

    server = subprocess.Popen([VISRET, "serve", "--index", str(digits_index), "--port", "0", "--workers", "2"], stderr=subprocess.PIPE, text=True, env=project_env)
    try:
        line = server.stderr.readline()
        assert line.startswith(f"serving {digits_index} (150 images) at http://127.0.0.1:"), line
        address = line.split(" at ")[1].split()[0]
        answers = [httpx.get(address + "api/info", timeout=30).json()["count"] for _ in range(8)]  # whichever process answers
        assert answers == [150] * 8 and " in 2 processes " in line
        rebound = [httpx.get(address + "api/info", headers={"host": "attacker.example"}, timeout=30).status_code for _ in range(8)]
        assert rebound == [421] * 8  # every process checks the Host header
    finally:
        server.terminate()
        server.wait(timeout=30)
    ipv6 = subprocess.Popen([VISRET, "serve", "--index", str(digits_index), "--port", "0", "--host", "::1"], stderr=subprocess.PIPE, text=True, env=project_env)
    try:
        line = ipv6.stderr.readline()
        assert " at http://[::1]:" in line, line  # a URL a browser can open
        assert httpx.get(line.split(" at ")[1].split()[0] + "api/info", timeout=30).status_code == 200
    finally:
        ipv6.terminate()
        ipv6.wait(timeout=30)
    missing = subprocess.run([VISRET, "serve", "--index", str(digits_index.parent / "nope")], capture_output=True, text=True, env=project_env, timeout=60)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1



def test_guards_bound_streamed_bodies_check_the_host_and_set_safe_headers(digits_index):
    app = create_app(digits_index, max_upload=2000)
    local = TestClient(app, base_url="http://127.0.0.1:8000")

    def chunks():  # no Content-Length: a chunked upload far over the limit
        for _ in range(200):
            yield b"x" * 65536

    streamed = local.post("/api/query", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413 and "larger than" in streamed.json()["detail"]
    page = local.get("/")
    assert page.status_code == 200 and 'src="/app.js"' in page.text and "<script>" not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert local.get("/app.js").headers["content-type"].startswith("text/javascript")
    for host in ("localhost:8000", "[::1]:8000", "127.0.0.1"):
        assert local.get("/api/info", headers={"host": host}).status_code == 200, host
    rebound = local.get("/api/info", headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 421 and "count" not in rebound.text
    everywhere = TestClient(create_app(digits_index, host="0.0.0.0"), base_url="http://192.0.2.7:8000")
    assert everywhere.get("/api/info").status_code == 200  # listening everywhere: the machine's names are unknown
    named = TestClient(create_app(digits_index, host="127.0.0.1", allow_hosts=["photos.lan"]), base_url="http://photos.lan")
    assert named.get("/api/info").status_code == 200
    head = local.head("/")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"].startswith("text/html")
    wrong = local.get("/", params={"page": "abc"})
    assert wrong.status_code == 422 and wrong.headers["content-type"].startswith("text/html") and "page" in wrong.text


def test_evaluation_of_a_one_image_index_and_an_index_gone_while_served_are_clear_answers(tmp_path):
    folder = tmp_path / "one" / "a"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "x.png")
    visret.build_index(tmp_path / "one", "color-hist", tmp_path / "ix", workers=1).close()
    client = TestClient(create_app(tmp_path / "ix"), base_url="http://127.0.0.1", raise_server_exceptions=False)
    evaluation = client.get("/evaluation")
    assert evaluation.status_code == 400 and "at least two labelled entries" in evaluation.text and "<h1>400</h1>" in evaluation.text
    (tmp_path / "ix").rename(tmp_path / "moved")
    for path in ("/", "/api/info", "/evaluation"):
        gone = client.get(path)
        assert gone.status_code == 400 and "is gone" in gone.text and "Traceback" not in gone.text, path


def test_decoding_holds_pixels_of_a_shared_budget_so_huge_uploads_decode_one_at_a_time():
    from visret.serve.budget import PixelBudget, pixels_of

    budget = PixelBudget(100)
    inside, most = 0, 0
    lock = threading.Lock()

    def decode(pixels):
        nonlocal inside, most
        with budget.hold(pixels):
            with lock:
                inside += pixels
                most = max(most, inside)
            threading.Event().wait(0.02)
            with lock:
                inside -= pixels

    threads = [threading.Thread(target=decode, args=(p,)) for p in (90, 90, 90, 10, 10, 10, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert most <= 100 and all(not thread.is_alive() for thread in threads)
    with budget.hold(10**9):  # larger than the budget: waits for all of it, then decodes alone
        pass
    big = io.BytesIO()
    Image.new("L", (3000, 2000)).save(big, format="PNG")
    assert pixels_of(big.getvalue()) == 6_000_000 and pixels_of(b"not an image") == 1


@pytest.mark.parametrize("in_flight", ["an upload still arriving", "a long search"])
def test_serve_stops_on_sigterm_within_5_s_with_a_request_in_flight(in_flight, digits_index, project_env):
    """A request the server cannot finish (a client that stops sending, work that does not end) never
    keeps it from stopping: SIGTERM ends it within 5 s."""
    import signal
    import socket
    import time

    server = subprocess.Popen([VISRET, "serve", "--index", str(digits_index), "--port", "0"], stderr=subprocess.PIPE, text=True, env=project_env)
    try:
        address = server.stderr.readline().split(" at ")[1].split()[0]
        host, port = address.split("//")[1].rstrip("/").split(":")
        client = socket.create_connection((host, int(port)))
        if in_flight == "an upload still arriving":
            client.sendall(b"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                           b"Content-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n")
        else:  # every entry's neighbours, again and again, on many connections
            for _ in range(8):
                socket.create_connection((host, int(port))).sendall(b"GET /api/similar/1?k=150 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2000)
        time.sleep(0.5)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert time.monotonic() - start <= 5.0
        client.close()
    finally:
        server.kill()
        server.wait()
