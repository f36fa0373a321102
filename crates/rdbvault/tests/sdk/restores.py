"""restore_instance and list_restore_records through the official SDK.

Usage: restores.py ENDPOINT AK SK PROJECT INSTANCE_ID BACKUP_ID
The caller checks the dataset the restore put back.
"""
import sys
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkdcs.v2 import (
    DcsClient,
    ListRestoreRecordsRequest,
    RestoreInstanceBody,
    RestoreInstanceRequest,
)

endpoint, ak, sk, project, instance_id, backup_id = sys.argv[1:7]
client = DcsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project)).with_endpoint(endpoint).build()


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""))
    if not ok:
        sys.exit(1)


started = client.restore_instance(
    RestoreInstanceRequest(instance_id=instance_id, body=RestoreInstanceBody(backup_id=backup_id, remark="from the SDK"))
)
restore_id = started.restore_id
check("restore_id", bool(restore_id), restore_id)

deadline = time.time() + 60
while True:
    listed = client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id, offset=0, limit=10))
    record = next((r for r in listed.restore_record_response if r.restore_id == restore_id), None)
    check("listed", record is not None, listed.total_num)
    if record.status in ("succeed", "failed"):
        break
    check("in progress", record.status in ("waiting", "restoring"), record.status)
    check("not stuck", time.time() < deadline, record.status)
    time.sleep(0.2)

check("total_num", listed.total_num == 1, listed.total_num)
check("status", record.status == "succeed", record.status)
check("progress", record.progress == "100.00", record.progress)
check("backup_id", record.backup_id == backup_id, record.backup_id)
check("backup_name", record.backup_name.startswith("backup_"), record.backup_name)
check("restore_name", record.restore_name.startswith("restore_"), record.restore_name)
check("restore_remark", record.restore_remark == "from the SDK", record.restore_remark)
check("error_code", record.error_code is None, record.error_code)
check("created_at", record.created_at.endswith("Z"), record.created_at)
check("updated_at", record.updated_at >= record.created_at, record.updated_at)

# Time filters: everything from 2000 on, nothing before it.
early = client.list_restore_records(
    ListRestoreRecordsRequest(instance_id=instance_id, begin_time="20000101000000", end_time="20000102000000")
)
check("empty window", early.total_num == 0, early.total_num)
wide = client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id, begin_time="20000101000000"))
check("wide window", wide.total_num == 1, wide.total_num)


def expect_error(name, call, status, code):
    try:
        call()
    except exceptions.ClientRequestException as e:
        check(name + " status", e.status_code == status, e.status_code)
        check(name + " error_code", e.error_code == code, e.error_code)
        return
    check(name, False, "no error raised")


expect_error(
    "unknown backup",
    lambda: client.restore_instance(
        RestoreInstanceRequest(
            instance_id=instance_id, body=RestoreInstanceBody(backup_id="00000000-0000-4000-8000-000000000000")
        )
    ),
    404,
    "DCS.4930",
)
expect_error(
    "limit 0",
    lambda: client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id, limit=0)),
    400,
    "DCS.4800",
)
print("all SDK checks passed")
