"""The console in a real browser (Debian's Chromium, driven by Playwright)
against a real rdbvault and real redis-servers. Arguments: base URL, access
key, secret key, project id, the name of a healthy instance, the name of one
whose Redis is gone, and a directory for screenshots and the download.
Prints one JSON line with what the Rust side checks against the records."""

import hashlib
import json
import os
import sys

from playwright.sync_api import expect, sync_playwright

base, ak, sk, project, good, gone, out, spare = sys.argv[1:9]
os.makedirs(out, exist_ok=True)
shot = lambda page, name: page.screenshot(path=os.path.join(out, name), full_page=True)

with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                 args=["--no-sandbox", "--headless=new"])
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: d.accept())

    first = page.goto(base + "/console/")
    headers = first.headers
    assert "script-src 'self'" in headers["content-security-policy"], headers
    assert headers["x-frame-options"] == "DENY", headers

    # Keyboard: the form opens focused on the access key; Tab goes to the secret.
    expect(page.locator("#signin input[name=ak]")).to_be_focused()
    page.keyboard.type(ak)
    page.keyboard.press("Tab")
    expect(page.locator("#signin input[name=sk]")).to_be_focused()

    # A wrong secret: refused, and said so in the API's words.
    page.keyboard.type("wrong-" + sk)
    page.fill("#signin input[name=project]", project)
    page.click("#signin button[type=submit]")
    expect(page.locator("#error")).to_contain_text("DCS.1001")
    shot(page, "signin-error.png")

    page.fill("#signin input[name=sk]", sk)
    page.click("#signin button[type=submit]")
    expect(page.locator("#instances")).to_contain_text(good)
    expect(page.locator("#project")).to_have_value(project)
    shot(page, "instances.png")

    # Register an instance through the form, then remove it (confirmed).
    page.fill("#register input[name=name]", "spare-cache")
    page.fill("#register input[name=addrs]", spare)
    page.click("#register button[type=submit]")
    expect(page.locator("#instances")).to_contain_text("spare-cache")
    page.locator("#instances tr", has_text="spare-cache").get_by_role("button", name="Remove").click()
    expect(page.locator("#instances")).not_to_contain_text("spare-cache")

    # Back up now, and watch it reach 100 %.
    page.locator("#instances tr", has_text=good).get_by_role("button", name="Back up now").click()
    row = page.locator("#backups tbody tr").first
    expect(row).to_contain_text("succeed", timeout=60_000)
    expect(row).to_contain_text("100 %")
    backup_id = row.get_attribute("data-backup")
    shot(page, "backups.png")

    # Download its file through the page.
    row.get_by_role("button", name="Download").click()
    link = page.locator("#links a.file").first
    expect(link).to_be_visible()
    shown = page.locator("#links li").first.inner_text()
    with page.expect_download() as info:
        link.click()
    path = os.path.join(out, "download.rdb")
    info.value.save_as(path)
    with open(path, "rb") as f:
        downloaded = hashlib.sha256(f.read()).hexdigest()
    assert downloaded in shown, (downloaded, shown)
    shot(page, "links.png")

    # The key analysis of the backup, as charts and the biggest keys.
    page.goto(base + "/console/#/instances")
    page.locator("#instances tr", has_text=good).get_by_role("link").click()
    page.locator(f"#backups tr[data-backup='{backup_id}']").get_by_role("button", name="Analyze").click()
    analysis = page.locator("#analysis")
    expect(analysis).to_contain_text("5003 keys", timeout=30_000)
    expect(analysis).to_contain_text("bytes by type/encoding")
    expect(analysis.locator("svg.chart")).to_have_count(3)
    expect(analysis).to_contain_text("key:")
    shot(page, "analysis.png")

    # Restore it into its instance; the restore shows on the jobs page.
    page.locator(f"#backups tr[data-backup='{backup_id}']").get_by_role("button", name="Restore").click()
    page.select_option("#restore select[name=method]", "restore")
    page.click("#restore button[type=submit]")
    expect(page.locator("#restores")).to_contain_text("succeed", timeout=60_000)
    shot(page, "activity.png")
    page.goto(base + "/console/#/instances")
    page.locator("#instances tr", has_text=good).get_by_role("link").click()
    expect(page.locator(f"#backups tr[data-backup='{backup_id}']")).to_be_visible()

    # A second backup, then delete it (the confirmation is accepted).
    page.click("#backup-now")
    expect(page.locator("#backups tbody tr")).to_have_count(2, timeout=30_000)
    newest = page.locator("#backups tbody tr").first
    expect(newest).to_contain_text("succeed", timeout=60_000)
    second_id = newest.get_attribute("data-backup")
    assert second_id != backup_id
    newest.get_by_role("button", name="Delete").click()
    expect(page.locator(f"#backups tr[data-backup='{second_id}']")).to_contain_text("deleted", timeout=30_000)

    # A failed backup says why.
    page.goto(base + "/console/#/instances")
    page.locator("#instances tr", has_text=gone).get_by_role("button", name="Back up now").click()
    failed = page.locator("#backups tbody tr").first
    expect(failed).to_contain_text("failed", timeout=60_000)
    expect(failed).to_contain_text("dcs.08.0101")
    expect(failed).to_contain_text("no node of the instance could be reached")
    shot(page, "failed.png")

    # The instances page at phone width: nothing wider than the screen.
    page.goto(base + "/console/#/instances")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#instances")).to_contain_text(good)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 392, overflow
    shot(page, "instances-phone.png")

    # Calls without a valid signature are refused, whatever the page holds:
    # there is no session cookie to ride on, and a forged signature fails.
    unsigned = page.evaluate(f"fetch('/v2/{project}/instances').then(r => r.status)")
    assert unsigned == 401, unsigned
    forged = page.evaluate(f"""fetch('/v2/{project}/rdbvault/instances', {{method: 'POST',
        headers: {{'content-type': 'application/json', 'x-sdk-date': '20260101T000000Z',
                   'authorization': 'SDK-HMAC-SHA256 Access={ak}, SignedHeaders=host;x-sdk-date, Signature=' + '0'.repeat(64)}},
        body: JSON.stringify({{name: 'evil', mode: 'single', addrs: ['127.0.0.1:1']}})}}).then(r => r.status)""")
    assert forged == 401, forged

    # Sign out forgets the secret.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('rdbvault')") is None
    browser.close()
    bad = [e for e in console_errors if "401" not in e and "Failed to load resource" not in e]
    assert not bad, bad
    print(json.dumps({"backup_id": backup_id, "deleted": second_id, "sha256": downloaded}))
