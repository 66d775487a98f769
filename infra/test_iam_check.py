#!/usr/bin/env python3
"""Self-test of infra/iam_check.py: it must fail where AWS would deny.

- the policy evaluator follows IAM's rules (a condition key absent from the request fails a
  positive operator, `...IfExists` and negated operators pass it, an explicit Deny wins);
- the template as it was before issue 12 (ListBucketMultipartUploads under an s3:prefix
  condition) fails both the parliament lint and the call check;
- removing one grant the code needs fails the call check, and a grant no call needs fails it too.
Run by infra/check.sh (needs aws-sam-translator and parliament, like iam_check.py).
"""
import copy
import importlib
import json
import sys
import unittest
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iam_check  # noqa: E402

with warnings.catch_warnings():
    # parliament opens its data files without closing them; not ours to fix.
    warnings.simplefilter("ignore", ResourceWarning)
    importlib.import_module("parliament")

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "arn:aws:s3:::b"


def doc(*statements):
    return [{"Version": "2012-10-17", "Statement": list(statements)}]


class Evaluator(unittest.TestCase):
    def test_absent_key_fails_a_positive_condition(self):
        d = doc({"Effect": "Allow", "Action": "s3:ListBucketMultipartUploads", "Resource": BUCKET,
                 "Condition": {"StringLike": {"s3:prefix": ["p/*", "p"]}}})
        self.assertFalse(iam_check.allowed(d, "s3:ListBucketMultipartUploads", BUCKET, {}))
        self.assertTrue(iam_check.allowed(d, "s3:ListBucketMultipartUploads", BUCKET, {"s3:prefix": "p/x/"}))
        self.assertFalse(iam_check.allowed(d, "s3:ListBucketMultipartUploads", BUCKET, {"s3:prefix": "q/"}))

    def test_if_exists_and_negated_operators_pass_an_absent_key(self):
        d = doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                 "Condition": {"StringLikeIfExists": {"s3:prefix": "p/*"},
                               "StringNotEquals": {"aws:SourceVpc": "vpc-1"}}})
        self.assertTrue(iam_check.allowed(d, "s3:ListBucket", BUCKET, {}))

    def test_deny_wins_and_wildcards_match(self):
        d = doc({"Effect": "Allow", "Action": "s3:Get*", "Resource": f"{BUCKET}/p/*"},
                {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{BUCKET}/p/secret/*"})
        self.assertTrue(iam_check.allowed(d, "s3:GetObject", f"{BUCKET}/p/a", {}))
        self.assertFalse(iam_check.allowed(d, "s3:GetObject", f"{BUCKET}/p/secret/a", {}))
        self.assertFalse(iam_check.allowed(d, "s3:GetObject", f"{BUCKET}/q/a", {}))
        self.assertFalse(iam_check.allowed(d, "s3:PutObject", f"{BUCKET}/p/a", {}))


def function_statements(template):
    return template["Resources"]["ExtractFunction"]["Properties"]["Policies"][0]["Statement"]


def problems(template, params=None):
    params = params or {"PartitionMode": "catalog"}
    _, renderer, resources = iam_check.deployed(template, params)
    table = json.loads((ROOT / "infra" / "aws_calls.json").read_text(encoding="utf-8"))
    found = iam_check.lint(resources, "test")
    calls, _ = iam_check.check_calls(resources, renderer, table, "test",
                                     str(ROOT / "infra" / "backfill.asl.json"), False)
    return found + calls


class Template(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = iam_check.load_template(ROOT / "template.yaml")

    def test_the_template_passes(self):
        self.assertEqual(problems(self.template), [])

    def test_multipart_listing_under_a_prefix_condition_fails(self):
        t = copy.deepcopy(self.template)
        sts = function_statements(t)
        listing = next(s for s in sts if s.get("Sid") == "ListOwnPrefix")
        listing["Action"] = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
        sts.remove(next(s for s in sts if s.get("Sid") == "ListOpenUploads"))
        found = "\n".join(problems(t))
        self.assertIn("UNKNOWN_CONDITION_FOR_ACTION", found)
        self.assertIn("Unknown condition s3:prefix for action s3:ListBucketMultipartUploads", found)
        self.assertIn("list_multipart_uploads() (src/sink/storage/s3.rs", found)
        self.assertIn("needs s3:ListBucketMultipartUploads", found)

    def test_a_missing_grant_fails(self):
        t = copy.deepcopy(self.template)
        rw = next(s for s in function_statements(t) if s.get("Sid") == "ReadWriteOwnPrefix")
        rw["Action"].remove("s3:AbortMultipartUpload")
        found = problems(t)
        self.assertTrue(found)
        self.assertTrue(all("abort_multipart_upload()" in p and "needs s3:AbortMultipartUpload" in p
                            for p in found), found)

    def test_an_unused_grant_fails(self):
        t = copy.deepcopy(self.template)
        rw = next(s for s in function_statements(t) if s.get("Sid") == "ReadWriteOwnPrefix")
        rw["Action"].append("s3:ListMultipartUploadParts")
        found = problems(t)
        self.assertEqual(len(found), 1, found)
        self.assertIn("grants s3:ListMultipartUploadParts", found[0])

    def test_glue_is_granted_only_in_catalog_mode(self):
        _, _, resources = iam_check.deployed(self.template, {"PartitionMode": "projection"})
        docs = iam_check.role_documents(resources, "ExtractFunctionRole")
        actions = {a for d in docs for s in d["Statement"] for a in iam_check._as_list(s["Action"])}
        self.assertFalse([a for a in actions if a.startswith("glue:")], actions)
        self.assertEqual(problems(self.template, {"PartitionMode": "projection"}), [])


if __name__ == "__main__":
    unittest.main()
