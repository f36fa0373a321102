"""A body whose Content-Type is not JSON, sent through the official Huawei
Cloud SDK: its signer then signs `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`
instead of the body, and rdbvault must verify that signature and answer
415 DCS.4915 (the media type is wrong), not 401 (as if the signature were).
A bad signature stays 401; a JSON body the signature does not cover is
refused; none of this counts towards the access key's lockout.

Usage: content_type.py ENDPOINT AK SK PROJECT INSTANCE_ID
Prints one line per check; exits non-zero on the first failure.
"""
import hashlib
import json
import sys
import urllib.parse
import urllib.error
import urllib.request

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkdcs.v2 import (
    BackupInstanceBody,
    CopyInstanceRequest,
    DownloadBackupFilesReq,
    ListBackupFileLinksRequest,
    ListInstancesRequest,
    RestoreInstanceBody,
    RestoreInstanceRequest,
    DcsClient,
)

endpoint, ak, sk, project, instance_id = sys.argv[1:6]
BACKUP = "0e8a9b7c-6d5e-4f3a-8b2c-1d0e9f8a7b6c"


def client(ak, sk):
    return DcsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project)).with_endpoint(endpoint).build()


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""))
    if not ok:
        sys.exit(1)


def expect_error(name, call, status, code):
    try:
        call()
    except exceptions.ClientRequestException as e:
        check(name + " status", e.status_code == status, (e.status_code, e.error_code, e.error_msg))
        check(name + " error_code", e.error_code == code, (e.error_code, e.error_msg))
        return
    check(name, False, "no error raised")


def with_content_type(c, http_info, content_type):
    """The SDK's own request for an operation, its Content-Type replaced."""
    http_info["header_params"]["Content-Type"] = content_type
    return lambda: c._call_api(**http_info)


good = client(ak, sk)
bad = client(ak, sk + "x")

copy = lambda: good._copy_instance_http_info(
    CopyInstanceRequest(instance_id=instance_id, body=BackupInstanceBody(remark="not json"))
)
links = lambda: good._list_backup_file_links_http_info(
    ListBackupFileLinksRequest(instance_id=instance_id, backup_id=BACKUP, body=DownloadBackupFilesReq(expiration=600))
)
restore = lambda: good._restore_instance_http_info(
    RestoreInstanceRequest(instance_id=instance_id, body=RestoreInstanceBody(backup_id=BACKUP))
)

# More refusals than the lockout allows (five): none of them is a failed signature.
for content_type in ["text/plain", "text/plain;charset=UTF-8", "application/xml"]:
    expect_error("copy_instance as " + content_type, with_content_type(good, copy(), content_type), 415, "DCS.4915")
expect_error("ListBackupFileLinks as text/plain", with_content_type(good, links(), "text/plain"), 415, "DCS.4915")
expect_error("restore_instance as text/plain", with_content_type(good, restore(), "text/plain"), 415, "DCS.4915")
expect_error("restore_instance as text/csv", with_content_type(good, restore(), "text/csv"), 415, "DCS.4915")

listed = good.list_instances(ListInstancesRequest())
check("the access key is not locked out", listed.status_code == 200, listed.status_code)

# The same requests with a wrong secret: the signature is what is wrong.
expect_error("wrong SK, text/plain", with_content_type(bad, copy(), "text/plain"), 401, "DCS.1001")
expect_error("wrong SK, text/plain, links", with_content_type(bad, links(), "text/plain"), 401, "DCS.1001")


def signed(method, path, content_type, body, extra_headers=None):
    """A request signed by the SDK's Signer itself, sent as signed."""
    host = urllib.parse.urlparse(endpoint).netloc
    headers = {"Content-Type": content_type, "X-Project-Id": project}
    headers.update(extra_headers or {})
    request = SdkRequest(
        method=method, schema="http", host=host, resource_path=path, uri=path,
        query_params=[], header_params=headers, body=body,
    )
    Signer(BasicCredentials(ak, sk, project)).sign(request)
    sent = urllib.request.Request(endpoint + path, data=request.body, method=method, headers=request.header_params)
    try:
        with urllib.request.urlopen(sent) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


backups = "/v2/%s/instances/%s/backups" % (project, instance_id)
status, answer = signed("POST", backups, "text/plain", b'{"remark": "x"}')
check("Signer, text/plain: 415", (status, answer.get("error_code")) == (415, "DCS.4915"), (status, answer))
# A JSON body whose signature names UNSIGNED-PAYLOAD: the request is
# authentic, its body is not, and it is not acted on.
status, answer = signed("POST", backups, "application/json", b'{"remark": "x"}',
                        {"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"})
check("Signer, JSON body unsigned: 401", (status, answer.get("error_code")) == (401, "DCS.1001"), (status, answer))
check("Signer, JSON body unsigned: said so", "not signed" in answer.get("error_msg", ""), answer)
# Naming the body's real hash signs it.
body = b'{"remark": "named hash"}'
status, answer = signed("POST", backups, "application/json", body,
                        {"X-Sdk-Content-Sha256": hashlib.sha256(body).hexdigest()})
check("Signer, JSON body with its hash named: accepted", status == 200 and "backup_id" in answer, (status, answer))

listed = good.list_instances(ListInstancesRequest())
check("still not locked out", listed.status_code == 200, listed.status_code)
print("all SDK checks passed")
