"""Drives the operator console in headless Chromium (Playwright, the
system's /usr/bin/chromium: no browser download) and prints what the page
shows as one JSON object; the Rust test (console.rs) judges it.

Usage: python console.py '{"action": ..., "url": ..., "token": ..., ...}'
"""

import json
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30_000


def rows(page):
    """The tenants table as the operator reads it."""
    return page.eval_on_selector_all(
        "#tenants tr.tenant",
        """trs => trs.map(tr => ({
            tenant: tr.querySelector('td.name').textContent,
            state: tr.querySelector('td.state').textContent,
            records_in: tr.querySelector('td.records').textContent,
            bad: tr.querySelector('td.bad').textContent,
            late: tr.querySelector('td.late').textContent,
            poisoned: tr.querySelector('td.poisoned').textContent,
            traps: tr.querySelector('td.traps').textContent,
            sparkline_points: tr.querySelectorAll('td.spark svg polyline').length,
        }))""",
    )


def wait_until(page, expression, timeout_ms=WAIT_MS):
    """Polls `expression` with page.evaluate (which the page's CSP allows,
    unlike wait_for_function's string predicates, evaluated with eval)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {expression}")
        time.sleep(0.2)


def wait_tenants(page):
    page.wait_for_selector("#tenants tr.tenant, #no-tenants", timeout=WAIT_MS)


def open_page(browser, seen):
    # Full-page screenshots grow past this height as the content needs.
    page = browser.new_page(viewport={"width": 1500, "height": 480})
    page.on("console", lambda m: seen["console"].append(m.type + ": " + m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("request", lambda r: seen["requests"].append(r.url))
    return page


def tenant_page(page, url, token, tenant):
    page.goto(f"{url}/?tenant={tenant}#token={token}")
    page.wait_for_selector("#tenant-state", timeout=WAIT_MS)


def main():
    args = json.loads(sys.argv[1])
    url, token, action = args["url"], args["token"], args["action"]
    seen = {"console": [], "errors": [], "dialogs": [], "requests": []}
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = open_page(browser, seen)
        if action == "sign-in":
            # The form: the token typed, then kept in sessionStorage only.
            page.goto(url + "/")
            page.wait_for_selector("#sign-in:not([hidden])", timeout=WAIT_MS)
            page.fill("#token", token)
            page.click("#sign-in-form button[type=submit]")
            wait_tenants(page)
            # Until the history has two points a sparkline has no line.
            if args.get("sparklines"):
                wait_until(
                    page,
                    "document.querySelectorAll('#tenants td.spark polyline').length"
                    f" >= {args['sparklines']}",
                    60_000,
                )
            out["rows"] = rows(page)
            out["empty"] = page.eval_on_selector_all(
                "#no-tenants", "e => e.map(x => x.textContent)"
            )
            out["session_token"] = page.evaluate(
                "sessionStorage.getItem('sluice.token')"
            )
            out["local_storage"] = page.evaluate("localStorage.length")
            if args.get("screenshot"):
                page.screenshot(path=args["screenshot"], full_page=True)
        elif action == "fragment":
            page.goto(f"{url}/#token={token}")
            wait_tenants(page)
            out["rows"] = rows(page)
            out["empty"] = page.eval_on_selector_all(
                "#no-tenants", "e => e.map(x => x.textContent)"
            )
            out["href"] = page.evaluate("location.href")
            out["session_token"] = page.evaluate(
                "sessionStorage.getItem('sluice.token')"
            )
            # Another tenant's page, by URL: the API refuses, the page says so.
            if args.get("other"):
                page.goto(f"{url}/?tenant={args['other']}")
                page.wait_for_selector("#load-error", timeout=WAIT_MS)
                out["other"] = page.text_content("#load-error")
        elif action == "pause":
            tenant_page(page, url, token, args["tenant"])
            out["before"] = page.text_content("#tenant-state")
            page.click("#pause")
            wait_until(
                page, "document.querySelector('#tenant-state').textContent === 'paused'"
            )
            out["after"] = page.text_content("#tenant-state")
            out["result"] = page.text_content("#action-result")
            out["resume_enabled"] = page.is_enabled("#resume")
        elif action == "deploy":
            tenant_page(page, url, token, args["tenant"])
            page.set_input_files("#deploy-manifest", args["manifest"])
            page.set_input_files("#deploy-module", args["module"])
            page.click("#deploy-submit")
            page.wait_for_selector(
                "#deploy-result.error, #deploy-result.ok", timeout=120_000
            )
            out["result"] = page.text_content("#deploy-result")
            out["class"] = page.get_attribute("#deploy-result", "class")
        elif action == "deploy-new":
            # A new tenant from the tenants page's form; its row appears.
            page.goto(f"{url}/#token={token}")
            wait_tenants(page)
            page.fill("#deploy-tenant", args["tenant"])
            page.set_input_files("#deploy-manifest", args["manifest"])
            page.set_input_files("#deploy-module", args["module"])
            page.click("#deploy-submit")
            page.wait_for_selector(
                "#deploy-result.error, #deploy-result.ok", timeout=120_000
            )
            out["result"] = page.text_content("#deploy-result")
            out["class"] = page.get_attribute("#deploy-result", "class")
            page.wait_for_selector(
                f"#tenants tr.tenant[data-tenant={args['tenant']}]", timeout=WAIT_MS
            )
            out["rows"] = rows(page)
        elif action == "undeploy":
            # Undeploy asks first; Cancel keeps the tenant, Yes removes it.
            tenant_page(page, url, token, args["tenant"])
            page.click("#undeploy")
            out["asked"] = page.text_content("#undeploy-confirm")
            page.click("#undeploy-no")
            out["cancelled_hidden"] = page.is_hidden("#undeploy-confirm")
            page.click("#undeploy")
            page.click("#undeploy-yes")
            page.wait_for_url(f"{url}/", timeout=120_000)
            wait_tenants(page)
            out["rows"] = rows(page)
        elif action == "partitions":
            page.goto(f"{url}/#token={token}")
            page.wait_for_selector("#tenants tr.partition", timeout=WAIT_MS)
            out["partitions"] = page.eval_on_selector_all(
                "#tenants tr.partition",
                "trs => trs.map(tr => Array.from(tr.cells).map(td => td.textContent))",
            )
        elif action == "triggers":
            tenant_page(page, url, token, args["tenant"])
            page.wait_for_selector("#trigger-runs tr.trigger-run", timeout=WAIT_MS)
            out["runs"] = page.eval_on_selector_all(
                "#trigger-runs tr.trigger-run",
                "trs => trs.map(tr => Array.from(tr.cells).map(td => td.textContent))",
            )
        elif action == "xss":
            tenant_page(page, url, token, args["tenant"])
            page.wait_for_selector("#log li", timeout=WAIT_MS)
            page.wait_for_selector("#dead-letters tr.letter", timeout=WAIT_MS)
            out["log"] = page.eval_on_selector_all(
                "#log li", "lis => lis.map(li => li.textContent)"
            )
            out["letters"] = page.eval_on_selector_all(
                "#dead-letters td.row", "tds => tds.map(td => td.textContent)"
            )
            out["params"] = page.eval_on_selector_all(
                "#params td", "tds => tds.map(td => td.textContent)"
            )
            # Elements a payload would have made, were it parsed as HTML.
            out["injected"] = page.evaluate(
                "document.querySelectorAll('#view img, #view script, #view [onerror]').length"
            )
            out["xss_flag"] = page.evaluate("window.__xss === undefined ? null : window.__xss")
            if args.get("screenshot"):
                page.screenshot(path=args["screenshot"], full_page=True)
        else:
            raise SystemExit(f"unknown action {action}")
        browser.close()
    out.update(seen)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
