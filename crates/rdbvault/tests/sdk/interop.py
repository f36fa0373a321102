"""Drives rdbvault with the official Huawei Cloud DCS SDK: the SDK's signer
is the judge of our verifier, its models the judge of our answers.

Usage: interop.py ENDPOINT AK SK PROJECT OTHER_PROJECT INSTANCE_ID
Prints one line per check; exits non-zero on the first failure.
"""
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkdcs.v2 import DcsClient, ListInstancesRequest, ShowInstanceRequest

endpoint, ak, sk, project, other_project, instance_id = sys.argv[1:7]


def client(ak, sk, project):
    return DcsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project)).with_endpoint(endpoint).build()


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""))
    if not ok:
        sys.exit(1)


good = client(ak, sk, project)

listed = good.list_instances(ListInstancesRequest())
check("list_instances status", listed.status_code == 200, listed.status_code)
check("list_instances count", listed.instance_num == 1, listed.instance_num)
check("list_instances id", listed.instances[0].instance_id == instance_id, listed.instances[0].instance_id)
check("list_instances status RUNNING", listed.instances[0].status == "RUNNING", listed.instances[0].status)

paged = good.list_instances(ListInstancesRequest(offset=0, limit=5, name="sdk"))
check("list_instances with query", paged.instance_num == 1, paged.instance_num)

shown = good.show_instance(ShowInstanceRequest(instance_id=instance_id))
check("show_instance id", shown.instance_id == instance_id, shown.instance_id)
check("show_instance cache_mode", shown.cache_mode == "single", shown.cache_mode)
check("show_instance engine", shown.engine == "Redis", shown.engine)
check("show_instance port", isinstance(shown.port, int) and shown.port > 0, shown.port)


def expect_error(name, call, status, code):
    try:
        call()
    except exceptions.ClientRequestException as e:
        check(name + " status", e.status_code == status, e.status_code)
        check(name + " error_code", e.error_code == code, e.error_code)
        check(name + " request_id", bool(e.request_id), e.request_id)
        return
    check(name, False, "no error raised")


expect_error("wrong SK", lambda: client(ak, sk + "x", project).list_instances(ListInstancesRequest()), 401, "DCS.1001")
expect_error("other project", lambda: client(ak, sk, other_project).list_instances(ListInstancesRequest()), 403, "DCS.1004")
expect_error(
    "unknown instance",
    lambda: good.show_instance(ShowInstanceRequest(instance_id="00000000-0000-4000-8000-000000000000")),
    404,
    "DCS.3022",
)
expect_error("bad instance id", lambda: good.show_instance(ShowInstanceRequest(instance_id="a/b c")), 400, "DCS.4061")
print("all SDK checks passed")
