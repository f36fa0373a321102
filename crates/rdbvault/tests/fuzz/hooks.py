"""Schemathesis hooks of the standing fuzz campaign (`tests/fuzz_api.rs`).

- Every request to `/v2` is signed, just before it is sent, by the official
  Huawei Cloud SDK's own signer (`huaweicloudsdkcore`'s `Signer`) with the
  test credential: exactly the bytes that go on the wire (path, query,
  headers, body) are signed, as the SDK signs them.
- Positive cases mostly name what exists (the test project, the registered
  instance, its backups), so they reach the handlers instead of stopping at
  403/404; a share keeps the generated ids, so those answers are tested too.
  Negative cases are left as generated.
- `positive_data_acceptance` ("schema-valid request rejected") fails the
  run for any refusal of a request the document allows, except refusals
  that depend on the state of the service (an instance already backing
  up, a backup not finished, an address that does not answer, ...) and the
  few rules between fields the document states in words only: those are
  listed below, each by its exact error code and message.

Configured by the environment: RDBVAULT_FUZZ_AK, RDBVAULT_FUZZ_SK,
RDBVAULT_FUZZ_PROJECT, RDBVAULT_FUZZ_INSTANCE, RDBVAULT_FUZZ_BACKUP (a
succeeded backup of it, never deleted), RDBVAULT_FUZZ_SPARE (another, which
delete_backup may take), RDBVAULT_FUZZ_SPARE_INSTANCE (an instance without
backups, which remove_instance may take); RDBVAULT_FUZZ_TRACE, a file to
log each case and each dropped failure to.
"""
import hashlib
import os
import urllib.parse

import requests
import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

AK = os.environ["RDBVAULT_FUZZ_AK"]
SK = os.environ["RDBVAULT_FUZZ_SK"]
PROJECT = os.environ["RDBVAULT_FUZZ_PROJECT"]
INSTANCE = os.environ["RDBVAULT_FUZZ_INSTANCE"]
BACKUP = os.environ["RDBVAULT_FUZZ_BACKUP"]
SPARE = os.environ["RDBVAULT_FUZZ_SPARE"]
SPARE_INSTANCE = os.environ["RDBVAULT_FUZZ_SPARE_INSTANCE"]

SIGNER = Signer(BasicCredentials(AK, SK, PROJECT))


class SdkSignature(requests.auth.AuthBase):
    """Signs a prepared request (its final URL, headers and body bytes) as
    the SDK does; unsigned routes (health, metrics, the document, download
    links) are left alone."""

    def __call__(self, r):
        url = urllib.parse.urlsplit(r.url)
        if not url.path.startswith("/v2/"):
            return r
        body = r.body
        if isinstance(body, str):
            body = body.encode("utf-8")
            r.body = body
            r.prepare_content_length(body)
        body = body or b""
        headers = {"Host": url.netloc, "X-Project-Id": PROJECT, "User-Agent": "rdbvault-fuzz"}
        if r.headers.get("Content-Type"):
            headers["Content-Type"] = r.headers["Content-Type"]
        request = SdkRequest(
            method=r.method,
            schema=url.scheme,
            host=url.netloc,
            resource_path=url.path,
            uri=url.path,
            # Parsed as the service parses it (`+` is a space).
            query_params=urllib.parse.parse_qsl(url.query, keep_blank_values=True),
            header_params=headers,
            body=body,
        )
        SIGNER.sign(request)
        for name, value in request.header_params.items():
            r.headers[name] = value
        return r


AUTH = SdkSignature()


@schemathesis.hook
def before_call(context, case, kwargs):
    kwargs["auth"] = AUTH
    if os.environ.get("RDBVAULT_FUZZ_TRACE"):
        with open(os.environ["RDBVAULT_FUZZ_TRACE"], "a") as f:
            m = case.meta
            f.write("%s %s %s %s %s\n" % (m.phase.name if m else None, m.generation.mode if m else None, case.method, case.path, case.path_parameters))


def _keep_generated(value, share):
    """Deterministically, about one value in `share` stays as generated."""
    digest = hashlib.sha256(repr(value).encode()).digest()
    return digest[0] % share == 0


def _positive(case):
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _broken_path_parameters(case):
    """The path parameters a negative case breaks on purpose: none, some
    (named by the coverage phase), or `None` for any of them."""
    meta = case.meta
    if _positive(case):
        return set()
    path = meta.components.get(ParameterLocation.PATH)
    if path is None or path.mode.is_positive:
        return set()
    data = meta.phase.data
    if isinstance(data, CoveragePhaseData) and data.parameter_location == ParameterLocation.PATH and data.parameter:
        return {data.parameter}
    return None


@schemathesis.hook
def map_case(context, case):
    """What exists replaces generated ids, so that a case is answered for
    what it is about: in a positive case most ids (a share stays generated,
    for the 403 and 404 answers), in a negative one every id it does not
    break on purpose (its broken body or query must not hide behind a 403
    for a generated project)."""
    params = case.path_parameters
    broken = _broken_path_parameters(case)
    if params is None or broken is None:
        return case
    positive = _positive(case)

    def pin(name, value, share):
        if name in params and name not in broken and not (positive and _keep_generated(params[name], share)):
            params[name] = value

    pin("project_id", PROJECT, 8)
    # remove_instance may take only the spare instance: the campaign needs the other.
    removing = case.method.upper() == "DELETE" and "/rdbvault/instances/" in case.path
    pin("instance_id", SPARE_INSTANCE if removing else INSTANCE, 4)
    # delete_backup may take only the spare: the others need a backup to act on.
    pin("backup_id", SPARE if case.method.upper() == "DELETE" else BACKUP, 4)
    body = case.body
    if positive and isinstance(body, dict) and case.path.endswith("/restores") and case.method.upper() == "POST":
        if "backup_id" in body and not _keep_generated(body["backup_id"], 4):
            body["backup_id"] = BACKUP
        if body.get("target_instance_id") is not None and not _keep_generated(body["target_instance_id"], 4):
            body["target_instance_id"] = INSTANCE
    return case


# Refusals of a schema-valid request that depend on the state of the
# service, not on the request's form: error_code -> why.
STATE = {
    "DCS.4026": "not allowed in the instance's current state (removing one that holds backups)",
    "DCS.4087": "restoring a backup that has not succeeded (or was deleted by the campaign)",
    "DCS.4096": "the instance is already backing up",
    "DCS.4097": "the instance is already being restored",
    "DCS.4920": "a generated address does not answer",
    "DCS.4921": "the server at a generated address runs in another mode",
    "DCS.4922": "a generated password is refused",
    "DCS.4923": "a generated ACL user lacks a right",
    "DCS.4943": "the backup is not finished yet",
    "DCS.4944": "the backup failed",
    "DCS.4945": "the backup was deleted",
    "DCS.4946": "the backup expired",
    "DCS.4947": "the backup is being read by a restore",
    "DCS.4950": "cluster slots not all covered",
}

# The rules between fields the document states in its descriptions:
# (error_code, a phrase of error_msg).
BETWEEN_FIELDS = [
    ("DCS.4800", "begin_time is after end_time"),
    ("DCS.4800", "a single instance has exactly one address"),
    ("DCS.4800", "an ACL user needs a password"),
    ("DCS.4800", "replicate needs a single or ha target"),
    ("DCS.4800", "replicate replaces the target's whole dataset"),
    ("DCS.4072", "required when backup_type is auto"),
    ("DCS.4076", "periodical_backup_plan is required when backup_type is auto"),
    ("DCS.4076", "is an empty window"),
    # The state of the backup named, not the request's form: an AOF backup
    # has no RDB to analyze (said in the operation's description).
    ("DCS.4800", "only RDB backups are analyzed"),
]


def _error(response):
    try:
        body = response.json()
    except Exception:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    return body.get("error_code"), str(body.get("error_msg", ""))


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if type(failure).__name__ != "RejectedPositiveData":
        return True
    code, message = _error(response)
    keep = code not in STATE and not any(code == c and phrase in message for c, phrase in BETWEEN_FIELDS)
    if os.environ.get("RDBVAULT_FUZZ_TRACE"):
        with open(os.environ["RDBVAULT_FUZZ_TRACE"], "a") as f:
            f.write("DROPPED %s %s %s %s\n" % (keep, case.method, case.path, (code, message[:100])))
    return keep
