"""The Dockerfile and .dockerignore, read as Docker reads them (no Docker
engine runs on the build machines): two stages, the build on Amazon Linux
2023 with its own packages, the one dependency it lacks fetched at a
pinned version and checked by SHA-256, the same runtime/build-zip.sh as
the zip package, and a final stage on the Lambda provided.al2023 image
with the bootstrap in ${LAMBDA_RUNTIME_DIR} and the jobs in
${LAMBDA_TASK_ROOT}. The build context keeps every file the build reads
and nothing of this machine's build trees.
"""
import os
import re
import shlex
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jhtest  # noqa: E402

BUILD_IMAGE = "public.ecr.aws/amazonlinux/amazonlinux:2023"
FINAL_IMAGE = "public.ecr.aws/lambda/provided:al2023"


def parse_dockerfile(text):
    """[(instruction, arguments)] with continuations joined and comments
    dropped, as the Dockerfile parser reads them."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    if current.strip():
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(instructions):
    """[{"from": image, "name": alias, "body": [(instr, args)]}]"""
    result = []
    for instr, args in instructions:
        if instr == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and \
                words[1].upper() == "AS" else None
            result.append({"from": words[0], "name": name, "body": []})
        elif result:
            result[-1]["body"].append((instr, args))
    return result


def ignore_pattern(pattern):
    """A .dockerignore pattern as a regex over slash paths: '*' and '?'
    stay within one path element, '**' spans any."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + r"\Z")


def ignored(rules, path):
    """Whether Docker leaves path out of the build context: the last
    matching rule decides, and a rule matches a path or any of its
    leading directories with as many elements as the rule has."""
    excluded = False
    parts = path.split("/")
    for negate, pattern in rules:
        rx = ignore_pattern(pattern)
        depth = pattern.count("/") + 1
        if rx.match(path) or (depth < len(parts) and
                              rx.match("/".join(parts[:depth]))):
            excluded = not negate
    return excluded


def read_ignore(path):
    rules = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!")).lstrip("/")
            rules.append((negate, pattern))
    return rules


class DockerfileCase(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(jhtest.SOURCE, "Dockerfile")) as f:
            self.instructions = parse_dockerfile(f.read())
        self.stages = stages(self.instructions)

    def runs(self, stage):
        return [a for i, a in stage["body"] if i == "RUN"]

    def test_two_stages_on_the_right_images(self):
        self.assertEqual(len(self.stages), 2)
        build, final = self.stages
        self.assertEqual(build["from"], BUILD_IMAGE)
        self.assertEqual(build["name"], "build")
        self.assertEqual(final["from"], FINAL_IMAGE)

    def test_build_uses_amazon_linux_packages(self):
        build = self.stages[0]
        dnf = [r for r in self.runs(build) if "dnf install" in r]
        self.assertEqual(len(dnf), 1)
        words = set(shlex.split(dnf[0].replace("&&", " ")))
        for pkg in ("gcc", "cmake", "lua-devel", "libpq-devel",
                    "libcurl-devel", "openssl-devel", "libedit-devel",
                    "binutils", "zip", "unzip"):
            self.assertIn(pkg, words)
        for r in self.runs(build):
            self.assertNotIn("apt-get", r)

    def test_fetched_dependency_is_pinned_and_checked(self):
        build = self.stages[0]
        args = dict(a.split("=", 1) for i, a in build["body"]
                    if i == "ARG" and "=" in a)
        fetches = [r for r in self.runs(build) if "curl " in r]
        self.assertEqual(len(fetches), 1)
        run = fetches[0]
        (url_arg,) = [k for k in args if k.endswith("_URL")]
        (sum_arg,) = [k for k in args if k.endswith("_SHA256")]
        self.assertRegex(args[sum_arg], r"^[0-9a-f]{64}$")
        # A pinned version in the URL, fetched over HTTPS.
        self.assertRegex(args[url_arg], r"^https://.*2\.1\.0.*\.tar\.gz$")
        self.assertIn(f'"${url_arg}"', run)
        # The checksum is checked before anything is unpacked.
        check = run.index("sha256sum -c")
        self.assertIn(f"${sum_arg}", run[:check])
        self.assertLess(check, run.index("tar "))
        # lua-cjson ends up where the build's pkg-config finds it.
        self.assertIn("lua5.4-cjson.pc", run)
        self.assertIn("liblua5.4-cjson.a", run)

    def test_build_runs_the_zip_script(self):
        build = self.stages[0]
        copies = [a.split() for i, a in build["body"] if i == "COPY"]
        self.assertIn([".", "/src"], copies)
        script = [r for r in self.runs(build) if "build-zip.sh" in r]
        self.assertEqual(len(script), 1)
        self.assertIn("/src/runtime/build-zip.sh", script[0])
        path = os.path.join(jhtest.SOURCE, "runtime", "build-zip.sh")
        self.assertTrue(os.access(path, os.X_OK), path)
        # The zip is unpacked into /package, which the final stage copies.
        m = re.search(r"--output (\S+)", script[0])
        self.assertIsNotNone(m)
        self.assertRegex(script[0], r"cd /package\s+&&\s+unzip -q " +
                         re.escape(m.group(1)))

    def test_final_stage_paths(self):
        final = self.stages[1]
        copies = {}
        for instr, args in final["body"]:
            if instr == "COPY":
                words = args.split()
                self.assertEqual(words[0], "--from=build")
                copies[words[1]] = words[2]
        self.assertEqual(copies, {
            "/package/bootstrap": "${LAMBDA_RUNTIME_DIR}/bootstrap",
            "/package/lib": "${LAMBDA_RUNTIME_DIR}/lib",
            "/package/jobs": "${LAMBDA_TASK_ROOT}/jobs"})
        (cmd,) = [a for i, a in final["body"] if i == "CMD"]
        self.assertRegex(cmd, r'^\["[^"]+"\]$')
        for instr, _ in final["body"]:
            self.assertNotIn(instr, ("RUN", "ENTRYPOINT"))

    def test_context_keeps_what_the_build_reads(self):
        rules = read_ignore(os.path.join(jhtest.SOURCE, ".dockerignore"))
        needed = ["CMakeLists.txt", "runtime/build-zip.sh"]
        for folder in ("src", "lua", "cmake", "jobs"):
            files = sorted(os.listdir(os.path.join(jhtest.SOURCE, folder)))
            self.assertTrue(files, folder)
            needed += [f"{folder}/{f}" for f in files]
        for path in needed:
            self.assertFalse(ignored(rules, path), path)
        for path in ("build/CMakeCache.txt", "build-zip/jobhost",
                     ".git/HEAD", "jobhost-lambda.zip",
                     "tests/integration/jhtest.py"):
            self.assertTrue(ignored(rules, path), path)

    def test_ignore_matcher_reads_docker_rules(self):
        # The matcher above is itself checked on Docker's documented
        # semantics, so the context test cannot pass by a broken matcher.
        rules = [(False, "*"), (True, "src")]
        self.assertTrue(ignored(rules, "README.md"))
        self.assertFalse(ignored(rules, "src/main.c"))
        self.assertTrue(ignored([(False, "build*")], "build-x/a/b"))
        self.assertFalse(ignored([(False, "*.zip")], "dir/a.zip"))
        self.assertTrue(ignored([(False, "**/*.zip")], "dir/a.zip"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
