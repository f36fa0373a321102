"""update_instance's instance_backup_policy and show_instance through the official SDK.

Usage: policy.py ENDPOINT AK SK PROJECT INSTANCE_ID
"""
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkdcs.v2 import (
    BackupPlan,
    BackupPolicy,
    DcsClient,
    ModifyInstanceBody,
    ShowInstanceRequest,
    UpdateInstanceRequest,
)

endpoint, ak, sk, project, instance_id = sys.argv[1:6]
client = DcsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project)).with_endpoint(endpoint).build()


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""))
    if not ok:
        sys.exit(1)


plan = BackupPlan(backup_at=[1, 4], period_type="weekly", begin_at="01:00-02:00", timezone_offset="+0800")
policy = BackupPolicy(backup_type="auto", save_days=14, periodical_backup_plan=plan)
client.update_instance(UpdateInstanceRequest(instance_id=instance_id, body=ModifyInstanceBody(instance_backup_policy=policy)))

shown = client.show_instance(ShowInstanceRequest(instance_id=instance_id))
got = shown.instance_backup_policy
check("policy shown", got is not None)
check("backup_policy_id", bool(got.backup_policy_id), got.backup_policy_id)
check("tenant_id", got.tenant_id == project, got.tenant_id)
check("backup_type", got.policy.backup_type == "auto", got.policy.backup_type)
check("save_days", got.policy.save_days == 14, got.policy.save_days)
p = got.policy.periodical_backup_plan
check("backup_at", p.backup_at == [1, 4], p.backup_at)
check("begin_at", p.begin_at == "01:00-02:00", p.begin_at)
check("period_type", p.period_type == "weekly", p.period_type)
check("timezone_offset", p.timezone_offset == "+0800", p.timezone_offset)


def expect_error(name, body, status, code):
    try:
        client.update_instance(UpdateInstanceRequest(instance_id=instance_id, body=body))
    except exceptions.ClientRequestException as e:
        check(name + " status", e.status_code == status, e.status_code)
        check(name + " error_code", e.error_code == code, e.error_code)
        return
    check(name, False, "no error raised")


expect_error("save_days 0", ModifyInstanceBody(instance_backup_policy=BackupPolicy(backup_type="auto", save_days=0, periodical_backup_plan=plan)), 400, "DCS.4072")
expect_error("rename", ModifyInstanceBody(name="renamed"), 400, "DCS.4800")
print("all SDK checks passed")
