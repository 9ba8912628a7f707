#!/usr/bin/env python3
"""Smoke test of a Cairn S3 endpoint with the clients people use: the aws CLI and boto3.

    python3 e2e/python/smoke.py ENDPOINT ACCESS_KEY SECRET_KEY
    # or: CAIRN_ENDPOINT=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python3 e2e/python/smoke.py

Covers `aws s3 cp` up and down (small, erasure-coded and a 20 MiB multipart upload), `aws s3 sync`
of a directory tree both ways, `aws s3 ls`, `aws s3 presign` fetched with urllib, `aws s3 rm
--recursive`, and boto3 calls checking what the CLI did. Works in its own bucket and removes it.
Exits 0 when everything matched, 1 with a message naming the first mismatch otherwise, 2 on bad
usage. The CLI runs with a private config file (path-style addressing, SigV4) and no instance
metadata lookups, so no user configuration is read.
"""

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

MIB = 1024 * 1024
CALL_TIMEOUT = 180  # seconds per CLI call or HTTP fetch


class SmokeFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise SmokeFailure(msg)


def step(name):
    print(f"--- {name}", flush=True)


def random_file(path, size, seed):
    """Writes `size` deterministic pseudo-random bytes (fast: SHA-256 in counter mode)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        counter = 0
        left = size
        while left > 0:
            block = b"".join(
                hashlib.sha256(f"{seed}:{counter + i}".encode()).digest() for i in range(2048)
            )
            counter += 2048
            f.write(block[:left])
            left -= min(left, len(block))


def file_md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def same_file(a, b, what):
    check(os.path.exists(b), f"{what}: {b} was not created")
    sa, sb = os.path.getsize(a), os.path.getsize(b)
    check(sa == sb, f"{what}: {sb} bytes, expected {sa}")
    check(file_md5(a) == file_md5(b), f"{what}: content differs ({sa} bytes)")


def tree(root):
    """Relative path -> md5 of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            out[os.path.relpath(p, root)] = file_md5(p)
    return out


class Cli:
    def __init__(self, endpoint, access_key, secret_key, workdir):
        self.endpoint = endpoint
        config = os.path.join(workdir, "aws-config")
        with open(config, "w") as f:
            f.write(
                "[default]\n"
                "region = us-east-1\n"
                "s3 =\n"
                "    addressing_style = path\n"
                "    signature_version = s3v4\n"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=config,
            AWS_SHARED_CREDENTIALS_FILE=os.path.join(workdir, "aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PAGER="",
        )
        self.env = env

    def run(self, *args):
        cmd = ["aws", "--endpoint-url", self.endpoint, *args]
        started = time.monotonic()
        try:
            p = subprocess.run(
                cmd, env=self.env, capture_output=True, text=True, timeout=CALL_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise SmokeFailure(f"`{' '.join(cmd)}` took more than {CALL_TIMEOUT}s")
        took = time.monotonic() - started
        if p.returncode != 0:
            raise SmokeFailure(
                f"`{' '.join(cmd)}` exited with {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        print(f"    aws {' '.join(args)}  ({took:.2f}s)", flush=True)
        return p.stdout


def main(argv):
    args = argv[1:]
    endpoint = args[0] if len(args) > 0 else os.environ.get("CAIRN_ENDPOINT")
    access_key = args[1] if len(args) > 1 else os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = args[2] if len(args) > 2 else os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (endpoint and access_key and secret_key):
        print(__doc__, file=sys.stderr)
        return 2
    import boto3
    import botocore.config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 1},
            connect_timeout=10,
            read_timeout=CALL_TIMEOUT,
        ),
    )
    work = tempfile.mkdtemp(prefix="cairn-smoke-")
    bucket = "smoke-" + secrets.token_hex(6)
    cli = Cli(endpoint, access_key, secret_key, work)
    started = time.monotonic()
    try:
        run(cli, s3, bucket, work)
    except SmokeFailure as e:
        print(f"SMOKE FAILED: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a boto3 error, a missing file...: still a clear failure
        print(f"SMOKE FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        cleanup(s3, bucket)
    print(f"SMOKE OK in {time.monotonic() - started:.1f}s", flush=True)
    return 0


def keys(s3, bucket, prefix=""):
    out = []
    token = None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 3}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        out.extend(o["Key"] for o in page.get("Contents", []))
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


def cleanup(s3, bucket):
    try:
        for k in keys(s3, bucket):
            s3.delete_object(Bucket=bucket, Key=k)
        s3.delete_bucket(Bucket=bucket)
    except Exception:
        pass


def run(cli, s3, bucket, work):
    up = os.path.join(work, "up")
    down = os.path.join(work, "down")
    os.makedirs(down)

    step("make the bucket (aws s3 mb), see it with boto3")
    cli.run("s3", "mb", f"s3://{bucket}")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    check(bucket in names, f"list_buckets does not show {bucket}: {names}")

    step("aws s3 cp up and down: inline (1 KiB) and erasure-coded (3 MiB) objects")
    for name, size in [("small.bin", 1024), ("medium.bin", 3 * MIB + 11)]:
        src = os.path.join(up, name)
        random_file(src, size, name)
        cli.run("s3", "cp", src, f"s3://{bucket}/cp/{name}")
        head = s3.head_object(Bucket=bucket, Key=f"cp/{name}")
        check(head["ContentLength"] == size, f"cp/{name}: HEAD says {head['ContentLength']} bytes, sent {size}")
        check(head["ETag"].strip('"') == file_md5(src), f"cp/{name}: ETag {head['ETag']} is not the MD5 of what was sent")
        dst = os.path.join(down, name)
        cli.run("s3", "cp", f"s3://{bucket}/cp/{name}", dst)
        same_file(src, dst, f"aws s3 cp of {name} down")

    step("multipart: aws s3 cp of a 20 MiB file (8 MiB parts), download, compare")
    big = os.path.join(up, "big.bin")
    random_file(big, 20 * MIB, "big")
    cli.run("s3", "cp", big, f"s3://{bucket}/mp/big.bin")
    head = s3.head_object(Bucket=bucket, Key="mp/big.bin")
    check(head["ContentLength"] == 20 * MIB, f"mp/big.bin: {head['ContentLength']} bytes")
    check(head["ETag"].strip('"').endswith("-3"), f"mp/big.bin: ETag {head['ETag']} is not that of a 3-part upload")
    big_down = os.path.join(down, "big.bin")
    cli.run("s3", "cp", f"s3://{bucket}/mp/big.bin", big_down)
    same_file(big, big_down, "multipart object downloaded by the CLI")
    part = s3.get_object(Bucket=bucket, Key="mp/big.bin", Range=f"bytes={8 * MIB - 5}-{8 * MIB + 4}")["Body"].read()
    with open(big, "rb") as f:
        f.seek(8 * MIB - 5)
        check(part == f.read(10), "ranged GET across the first part boundary returned wrong bytes")

    step("aws s3 sync of a directory tree up, then down into an empty directory")
    src_tree = os.path.join(work, "tree")
    files = {
        "top.txt": 10,
        "empty.txt": 0,
        "a/b/c.txt": 2000,
        "a/b/blob.bin": 300 * 1024,
        "a/with space.txt": 70,
        "a/ünïcödé.txt": 80,
        "deep/1/2/3/4/leaf.bin": 70 * 1024,
    }
    for rel, size in files.items():
        random_file(os.path.join(src_tree, rel), size, rel)
    cli.run("s3", "sync", src_tree, f"s3://{bucket}/tree/")
    listed = sorted(k[len("tree/"):] for k in keys(s3, bucket, "tree/"))
    check(listed == sorted(files), f"after sync up the bucket lists {listed}, expected {sorted(files)}")
    out = cli.run("s3", "sync", src_tree, f"s3://{bucket}/tree/")
    check("upload:" not in out, f"a second sync of an unchanged tree uploaded again:\n{out}")
    dst_tree = os.path.join(work, "tree-down")
    cli.run("s3", "sync", f"s3://{bucket}/tree/", dst_tree)
    check(tree(src_tree) == tree(dst_tree), f"synced-down tree differs: {sorted(tree(dst_tree))}")

    step("aws s3 ls")
    out = cli.run("s3", "ls", f"s3://{bucket}/")
    for prefix in ["cp/", "mp/", "tree/"]:
        check(f"PRE {prefix}" in out, f"`aws s3 ls` does not show {prefix}:\n{out}")
    out = cli.run("s3", "ls", "--recursive", f"s3://{bucket}/tree/")
    for rel, size in files.items():
        line = next((l for l in out.splitlines() if l.endswith(f"tree/{rel}")), None)
        check(line is not None, f"`aws s3 ls --recursive` does not show tree/{rel}:\n{out}")
        check(line.split()[2] == str(size), f"`aws s3 ls` shows {line!r} for {size} bytes")
    out = cli.run("s3", "ls")
    check(bucket in out, f"`aws s3 ls` does not list the bucket:\n{out}")

    step("aws s3 presign, fetched with urllib")
    url = cli.run("s3", "presign", f"s3://{bucket}/cp/medium.bin", "--expires-in", "300").strip()
    check(url.startswith(cli.endpoint), f"presigned URL {url!r} is not on the endpoint")
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as r:
        body = r.read()
        check(r.status == 200, f"presigned GET answered {r.status}")
    with open(os.path.join(up, "medium.bin"), "rb") as f:
        check(body == f.read(), f"presigned GET returned {len(body)} wrong bytes")
    tampered = url.replace("cp/medium.bin", "cp/small.bin")
    try:
        urllib.request.urlopen(tampered, timeout=CALL_TIMEOUT).read()
        raise SmokeFailure("a presigned URL still worked for another key")
    except urllib.error.HTTPError as e:
        check(e.code == 403, f"a tampered presigned URL answered {e.code}, expected 403")

    step("aws s3 rm --recursive")
    cli.run("s3", "rm", "--recursive", f"s3://{bucket}/tree/")
    left = keys(s3, bucket, "tree/")
    check(left == [], f"objects left after rm --recursive: {left}")
    others = keys(s3, bucket)
    check(sorted(others) == ["cp/medium.bin", "cp/small.bin", "mp/big.bin"], f"rm --recursive of tree/ touched other keys: {others}")
    cli.run("s3", "rm", "--recursive", f"s3://{bucket}/")
    check(keys(s3, bucket) == [], "objects left after rm --recursive of the whole bucket")

    step("remove the bucket (aws s3 rb)")
    cli.run("s3", "rb", f"s3://{bucket}")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    check(bucket not in names, f"{bucket} still listed after rb")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
