"""ListBackupFileLinks through the official SDK, and the link it returns
downloaded with the standard library alone.

Usage: links.py ENDPOINT AK SK PROJECT INSTANCE_ID BACKUP_ID EXPECTED_SHA256
"""
import hashlib
import sys
import urllib.request

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkdcs.v2 import (
    DcsClient,
    DownloadBackupFilesReq,
    ListBackupFileLinksRequest,
    ListBackupRecordsRequest,
)

endpoint, ak, sk, project, instance_id, backup_id, expected_sha = sys.argv[1:8]
client = DcsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project)).with_endpoint(endpoint).build()


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""))
    if not ok:
        sys.exit(1)


records = client.list_backup_records(ListBackupRecordsRequest(instance_id=instance_id, limit=10, offset=0))
check("list_backup_records total", records.total_num == 1, records.total_num)
record = records.backup_record_response[0]
check("record id", record.backup_id == backup_id, record.backup_id)
check("record status", record.status == "succeed", record.status)
check("record is_support_restore", record.is_support_restore == "TRUE", record.is_support_restore)

resp = client.list_backup_file_links(
    ListBackupFileLinksRequest(instance_id=instance_id, backup_id=backup_id, body=DownloadBackupFilesReq(expiration=300))
)
check("file_path", resp.file_path == f"{instance_id}/{backup_id}/", resp.file_path)
check("bucket_name", resp.bucket_name == "rdbvault", resp.bucket_name)
check("one link", len(resp.links) == 1, len(resp.links))
data = urllib.request.urlopen(resp.links[0].link).read()
check("download sha256", hashlib.sha256(data).hexdigest() == expected_sha, len(data))


def expect_error(name, call, status, code):
    try:
        call()
    except exceptions.ClientRequestException as e:
        check(name + " status", e.status_code == status, e.status_code)
        check(name + " error_code", e.error_code == code, e.error_code)
        return
    check(name, False, "no error raised")


expect_error(
    "expiration 299",
    lambda: client.list_backup_file_links(
        ListBackupFileLinksRequest(instance_id=instance_id, backup_id=backup_id, body=DownloadBackupFilesReq(expiration=299))
    ),
    400,
    "DCS.4942",
)
expect_error(
    "no body",
    lambda: client.list_backup_file_links(ListBackupFileLinksRequest(instance_id=instance_id, backup_id=backup_id)),
    400,
    "DCS.4004",
)
print("all SDK checks passed")
