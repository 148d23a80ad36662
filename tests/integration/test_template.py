"""jobhost template: the deploy template the real binary writes for a
jobs folder, parsed as JSON and checked as CloudFormation would read it.

Every Ref, Fn::GetAtt, Fn::Sub variable and Fn::If condition must name a
resource, parameter, pseudo parameter or condition of the template; each
scheduled job gets exactly one rule whose expression is the job's own,
character for character, with the input {"job": NAME} and an invoke
permission; the role may read exactly the secrets the jobs name; the
function is sized from the jobs. When cfn-lint is installed, it must find
no error or warning either.
"""
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jhtest  # noqa: E402

PSEUDO = {"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue",
          "AWS::Partition", "AWS::Region", "AWS::StackId",
          "AWS::StackName", "AWS::URLSuffix"}
# The attributes the template may read, by resource type.
ATTRIBUTES = {"AWS::Lambda::Function": {"Arn"},
              "AWS::Serverless::Function": {"Arn"},
              "AWS::IAM::Role": {"Arn"},
              "AWS::SQS::Queue": {"Arn", "QueueName", "QueueUrl"},
              "AWS::Events::Rule": {"Arn"}}
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[platform.machine()]
ORDERS_ARN_SUB = ("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                  "${AWS::AccountId}:secret:prod/orders-db-??????")
REPORTS_ARN = ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
               "reports/ro-AbCdEf")

JOB = """return {{
  description = "{name}",
  {fields}
  run = function(ctx, params) return {{ ok = true }} end,
}}
"""

# name -> spec fields (Lua). Schedules exercise the syntax EventBridge
# takes; the names exercise logical ids that collide once punctuation
# is dropped.
JOBS = {
    "purge_audit": {"schedule": "cron(15 3 * * ? *)",
                    "database": "prod/orders-db", "timeout": 600,
                    "memory": 512},
    "hourly_extract": {"schedule": "rate(1 hour)",
                       "database": REPORTS_ARN, "timeout": 120},
    "weekday_rollup": {"schedule": "cron(0/15 8-17 ? * MON-FRI *)",
                       "database": "prod/orders-db"},
    "month-end": {"schedule": "cron(0 22 L * ? 2026-2030)"},
    "month_end": {"schedule": "cron(30 6 ? * 6#3 *)",
                  "database": "host=db.internal dbname=orders"},
    "adhoc_fix": {"database": "postgresql://db.internal/orders"},
}


def lua_fields(fields):
    out = []
    for key, value in fields.items():
        out.append(f"{key} = {json.dumps(value)},")
    return "\n  ".join(out)


def references(node, path="$"):
    """Yields (kind, target, path) for every intrinsic reference."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key == "Ref":
                yield "Ref", value, here
            elif key == "Fn::GetAtt":
                yield "GetAtt", value, here
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                local = {} if isinstance(value, str) else value[1]
                for var in re.findall(r"\$\{([^}!][^}]*)\}", text):
                    if var not in local:
                        yield "Sub", var, here
            elif key == "Fn::If":
                yield "If", value[0], here
            yield from references(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from references(value, f"{path}[{i}]")


class TemplateCase(jhtest.Case):
    def setUp(self):
        super().setUp()
        for name, fields in JOBS.items():
            self.write_job(name, JOB.format(name=name,
                                            fields=lua_fields(fields)))

    def template(self, *args, jobs=None, expect_ok=True):
        proc = self.jobhost("template", "--jobs", jobs or self.jobs, *args)
        if expect_ok:
            self.assertEqual(proc.returncode, 0, proc.stderr)
            return json.loads(proc.stdout)
        return proc

    def assert_references_resolve(self, t):
        resources = t["Resources"]
        names = set(resources) | set(t.get("Parameters", {})) | PSEUDO
        conditions = set(t.get("Conditions", {}))
        seen = 0
        for kind, target, where in references(t):
            seen += 1
            if kind == "Ref":
                self.assertIn(target, names, where)
            elif kind == "GetAtt":
                resource, attribute = target
                self.assertIn(resource, resources, where)
                self.assertIn(attribute,
                              ATTRIBUTES[resources[resource]["Type"]], where)
            elif kind == "Sub":
                base = target.split(".")[0]
                self.assertIn(base, names, where)
                if "." in target:
                    self.assertIn(base, resources, where)
            else:
                self.assertIn(target, conditions, where)
        self.assertGreater(seen, 20)
        for name, resource in resources.items():
            if "Condition" in resource:
                self.assertIn(resource["Condition"], conditions, name)

    def rules(self, t):
        """{job name: rule properties} from the rules' constant inputs."""
        out = {}
        for name, r in t["Resources"].items():
            if r["Type"] != "AWS::Events::Rule":
                continue
            (target,) = r["Properties"]["Targets"]
            self.assertEqual(target["Arn"],
                             {"Fn::GetAtt": ["JobsFunction", "Arn"]})
            event = json.loads(target["Input"])
            self.assertEqual(list(event), ["job"])
            self.assertNotIn(event["job"], out)
            out[event["job"]] = dict(r["Properties"], LogicalId=name)
        return out

    def secret_resources(self, t):
        """The Resource list of every GetSecretValue statement."""
        found = []

        def walk(node):
            if isinstance(node, dict):
                if node.get("Action") == "secretsmanager:GetSecretValue":
                    self.assertEqual(node["Effect"], "Allow")
                    found.append(node["Resource"])
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)
        walk(t["Resources"])
        return found

    # -- the tests ---------------------------------------------------------

    def test_cloudformation_references_resolve(self):
        t = self.template()
        self.assertNotIn("Transform", t)
        self.assert_references_resolve(t)
        fn = t["Resources"]["JobsFunction"]
        self.assertEqual(fn["Type"], "AWS::Lambda::Function")
        self.assertEqual(fn["Properties"]["Role"],
                         {"Fn::GetAtt": ["JobsRole", "Arn"]})

    def test_sam_references_resolve(self):
        t = self.template("--format", "sam")
        self.assertEqual(t["Transform"], "AWS::Serverless-2016-10-31")
        self.assert_references_resolve(t)
        fn = t["Resources"]["JobsFunction"]
        self.assertEqual(fn["Type"], "AWS::Serverless::Function")
        self.assertEqual(fn["Properties"]["Runtime"], "provided.al2023")
        self.assertEqual(fn["Properties"]["DeadLetterQueue"]["TargetArn"],
                         {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]})

    def test_one_rule_per_scheduled_job_with_its_schedule(self):
        for fmt in ("cloudformation", "sam"):
            t = self.template("--format", fmt)
            rules = self.rules(t)
            scheduled = {n: f["schedule"] for n, f in JOBS.items()
                         if "schedule" in f}
            self.assertEqual(set(rules), set(scheduled), fmt)
            for name, schedule in scheduled.items():
                self.assertEqual(rules[name]["ScheduleExpression"], schedule)
            # Each rule may invoke the function, and only its own rule.
            perms = {r["Properties"]["SourceArn"]["Fn::GetAtt"][0]:
                     r["Properties"]
                     for r in t["Resources"].values()
                     if r["Type"] == "AWS::Lambda::Permission"}
            self.assertEqual(set(perms),
                             {r["LogicalId"] for r in rules.values()})
            for p in perms.values():
                self.assertEqual(p["Principal"], "events.amazonaws.com")
                self.assertEqual(p["Action"], "lambda:InvokeFunction")
                self.assertEqual(p["FunctionName"], {"Ref": "JobsFunction"})

    def test_colliding_names_get_distinct_ids(self):
        rules = self.rules(self.template())
        ids = {rules["month-end"]["LogicalId"],
               rules["month_end"]["LogicalId"]}
        self.assertEqual(len(ids), 2)
        for i in ids:
            self.assertRegex(i, r"^[A-Za-z0-9]+$")

    def test_policy_names_exactly_the_jobs_secrets(self):
        for fmt in ("cloudformation", "sam"):
            t = self.template("--format", fmt)
            (resources,) = self.secret_resources(t)
            self.assertCountEqual(resources,
                                  [{"Fn::Sub": ORDERS_ARN_SUB}, REPORTS_ARN])

    def test_extra_secrets_from_the_command_line(self):
        t = self.template("--secret", "shared/api-key", "--secret",
                          REPORTS_ARN)
        (resources,) = self.secret_resources(t)
        self.assertCountEqual(resources, [
            {"Fn::Sub": ORDERS_ARN_SUB}, REPORTS_ARN,
            {"Fn::Sub": ORDERS_ARN_SUB.replace("prod/orders-db",
                                               "shared/api-key")}])
        proc = self.template("--secret", "host=x dbname=y", expect_ok=False)
        self.assertEqual(proc.returncode, 2)

    def test_a_partial_secret_arn_matches_the_full_one(self):
        """An ARN that stops at the secret's name lacks the six
        characters AWS appends: the policy must match them, or the
        function is denied its own secret."""
        partial = REPORTS_ARN[:-len("-AbCdEf")]
        t = self.template("--secret", partial)
        (resources,) = self.secret_resources(t)
        self.assertIn(partial + "-??????", resources)
        self.assertIn(REPORTS_ARN, resources)

    def test_no_secret_statement_without_secrets(self):
        for name in list(JOBS):
            os.remove(os.path.join(self.jobs, name + ".lua"))
        self.write_job("local_only", JOB.format(
            name="x", fields='schedule = "rate(5 minutes)",'))
        for fmt in ("cloudformation", "sam"):
            t = self.template("--format", fmt)
            self.assertEqual(self.secret_resources(t), [])
            self.assert_references_resolve(t)

    def test_function_sized_from_the_jobs(self):
        t = self.template()
        props = t["Resources"]["JobsFunction"]["Properties"]
        self.assertEqual(props["Architectures"], [ARCH])
        # The largest heap (512 MiB) plus headroom; the longest timeout
        # (600 s) plus the margin that lets the job's own timeout strike
        # first.
        self.assertEqual(props["MemorySize"], 512 + 128)
        self.assertEqual(props["Timeout"], 600 + 10)
        # The binary itself skips GnuTLS's initialisation
        # (src/interpose.c): the function needs no environment.
        self.assertNotIn("Environment", props)
        self.assertEqual(props["Runtime"],
                         {"Fn::If": ["UseZip", "provided.al2023",
                                     {"Ref": "AWS::NoValue"}]})
        self.assertEqual(props["DeadLetterConfig"]["TargetArn"],
                         {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]})
        vpc = props["VpcConfig"]["Fn::If"]
        self.assertEqual(vpc[0], "UseVpc")
        self.assertEqual(vpc[1], {"SubnetIds": {"Ref": "SubnetIds"},
                                  "SecurityGroupIds":
                                      {"Ref": "SecurityGroupIds"}})
        for p in ("SubnetIds", "SecurityGroupIds"):
            self.assertEqual(t["Parameters"][p]["Type"],
                             "CommaDelimitedList")

    def test_timeout_capped_at_lambdas_limit(self):
        self.write_job("long_vacuum", JOB.format(
            name="x", fields='schedule = "cron(0 2 ? * SUN *)", '
                             'timeout = 3600,'))
        proc = self.template(expect_ok=False)
        self.assertEqual(proc.returncode, 0)
        props = json.loads(proc.stdout)["Resources"]["JobsFunction"]
        self.assertEqual(props["Properties"]["Timeout"], 900)
        self.assertIn("long_vacuum", proc.stderr)

    def test_invalid_schedule_writes_no_template(self):
        # Both day fields given: EventBridge requires one of them be '?'.
        self.write_job("bad_days", JOB.format(
            name="x", fields='schedule = "cron(0 12 * * * *)",'))
        proc = self.template(expect_ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, "")
        self.assertIn("bad_days", proc.stderr)
        check = self.jobhost("check", "--jobs", self.jobs, "bad_days")
        self.assertEqual(check.returncode, 1)
        # Every invalid job is named, not only the first.
        self.write_job("bad_timeout", JOB.format(
            name="y", fields='timeout = "soon",'))
        proc = self.template(expect_ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("job bad_days is invalid", proc.stderr)
        self.assertIn("job bad_timeout is invalid", proc.stderr)

    def test_empty_folder_and_bad_usage(self):
        empty = os.path.join(self.tmp, "empty")
        os.mkdir(empty)
        proc = self.template(jobs=empty, expect_ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, "")
        proc = self.template("--format", "yaml", expect_ok=False)
        self.assertEqual(proc.returncode, 2)

    def test_shipped_jobs(self):
        jobs = os.path.join(jhtest.SOURCE, "jobs")
        t = self.template(jobs=jobs)
        self.assert_references_resolve(t)
        declared = {}
        for f in os.listdir(jobs):
            if f.endswith(".lua"):
                with open(os.path.join(jobs, f)) as src:
                    m = re.search(r'^\s*schedule\s*=\s*"([^"]*)"', src.read(),
                                  re.M)
                if m:
                    declared[f[:-4]] = m.group(1)
        rules = self.rules(t)
        self.assertEqual({n: r["ScheduleExpression"]
                          for n, r in rules.items()}, declared)

    @unittest.skipUnless(shutil.which("cfn-lint"), "cfn-lint not installed")
    def test_cfn_lint_finds_nothing(self):
        for fmt in ("cloudformation", "sam"):
            path = os.path.join(self.tmp, f"{fmt}.json")
            with open(path, "w") as f:
                json.dump(self.template("--format", fmt), f)
            lint = subprocess.run(["cfn-lint", path], capture_output=True,
                                  text=True, timeout=300)
            self.assertEqual(lint.returncode, 0,
                             f"{fmt}: {lint.stdout}{lint.stderr}")


if __name__ == "__main__":
    jhtest.main()
