// The end users' journey in a real browser: a grid worker reports a ticket with a photo on
// a phone, the department handles it on a desktop, the grid worker verifies, the resident
// rates it; a form with errors keeps what was typed; another community gets 404.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import fs from "node:fs";

const BASE = process.env.BASE;
const SHOTS = new URL("./shots/", import.meta.url).pathname;
fs.mkdirSync(SHOTS, { recursive: true });
// A real 2×2 PNG, so the page can show it.
const PHOTO = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGM4oSEHRAwQCgAgPgQ5pTU1yQAAAABJRU5ErkJggg==",
  "base64",
);
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: "zh-CN" };
const DESKTOP = { viewport: { width: 1280, height: 860 }, locale: "zh-CN" };

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let passed = 0;
function step(name) {
  passed += 1;
  console.log(`ok ${passed} - ${name}`);
}
async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
}

async function signIn(options, who, { screenshot } = {}) {
  const ctx = await browser.newContext(options);
  const page = await ctx.newPage();
  await page.goto(`${BASE}/tasks`);
  assert.match(page.url(), /\/login\?next=%2Ftasks/, "a page needs a session first");
  if (screenshot) await shot(page, screenshot);
  await page.fill("#login", who);
  await page.fill("#password", `demo-pass-${who}`);
  await page.click("button[value=password]");
  await page.waitForURL(/\/tasks$/);
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === "cf_session");
  assert.ok(session && session.httpOnly && session.secure && session.sameSite === "Lax", "session cookie is HttpOnly, Secure, SameSite=Lax");
  return { ctx, page };
}

async function openTask(page, title) {
  await page.goto(`${BASE}/tasks`);
  await page.click(`#my-tasks a:has-text("${title}")`);
  await page.waitForURL(/\/tasks\/[^/]+$/);
}

// A JSON API call with a person's token: the status and the answer's text.
async function apiPost(token, path, body) {
  const r = await fetch(`${BASE}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return [r.status, await r.text()];
}

// The community worker starts an instance through the JSON API (its id).
async function startAsFeng(body) {
  const [status, answer] = await apiPost(process.env.FENG_TOKEN, "/api/instances", body);
  assert.equal(status, 201, answer);
  return JSON.parse(answer).instance.id;
}

async function submit(page) {
  await Promise.all([page.waitForNavigation(), page.click("form.card button[type=submit]")]);
}

try {
  // A wrong password is refused and says so.
  {
    const ctx = await browser.newContext(PHONE);
    const page = await ctx.newPage();
    await page.goto(`${BASE}/login`);
    await page.fill("#login", "wang");
    await page.fill("#password", "not-the-password");
    await page.click("button[value=password]");
    assert.match(await page.textContent(".summary"), /账号或密码不正确/);
    await ctx.close();
    step("a wrong password is refused");
  }

  // 1. The grid worker reports on a phone; the first try has mistakes.
  const wang = await signIn(PHONE, "wang", { screenshot: "01-sign-in-phone" });
  await wang.page.goto(`${BASE}/start`);
  await wang.page.click('a:has-text("事件上报与闭环")');
  await wang.page.waitForURL(/\/start\/ticket$/);
  assert.equal(await wang.page.getAttribute("#f-description", "minlength"), "5", "HTML attributes mirror the schema");
  assert.equal(await wang.page.getAttribute("#f-description", "maxlength"), "2000");
  assert.notEqual(await wang.page.getAttribute("#f-category", "required"), null);
  await wang.page.fill("#f-description", "井盖");
  await wang.page.fill("#f-location", "果园路 12 号");
  await wang.page.$eval("form.card", (f) => (f.noValidate = true)); // let the server judge
  await submit(wang.page);
  const summary = await wang.page.textContent("#error-summary");
  assert.match(summary, /2 处需要修改/, summary);
  assert.match(summary, /事件类别/);
  assert.equal(await wang.page.getAttribute('#error-summary a[href="#f-category"]', "href"), "#f-category");
  assert.match(await wang.page.textContent("#f-description-error"), /至少填写 5 个字符/);
  assert.equal(await wang.page.inputValue("#f-description"), "井盖", "what was typed is kept");
  assert.equal(await wang.page.inputValue("#f-location"), "果园路 12 号");
  assert.equal(await wang.page.evaluate(() => document.activeElement.id), "error-summary", "the summary takes focus");
  await shot(wang.page, "02-form-errors-phone");
  step("a form with errors keeps the input and shows the messages");

  await wang.page.selectOption("#f-category", "road");
  await wang.page.fill("#f-description", "井盖破损，行人容易踩空");
  // The resident reported for is picked by name from the grid's register, not typed.
  await wang.page.selectOption("#f-resident", { label: "周居民" });
  await wang.page.setInputFiles("#f-photos-input", { name: "well.png", mimeType: "image/png", buffer: PHOTO });
  await submit(wang.page);
  assert.match(wang.page.url(), /\/instances\/[^/?]+\?done=1$/);
  const ticketUrl = wang.page.url().replace(/\?.*$/, "");
  const img = await wang.page.$("img.thumb");
  assert.ok(img, "the photo shows on the ticket");
  assert.ok(await img.evaluate((i) => i.complete && i.naturalWidth === 2), "the photo loads");
  await shot(wang.page, "03-reported-phone");
  step("a grid worker reports a ticket with a photo on a phone");

  // 2. The department sees it in its list and handles it on a desktop.
  const chen = await signIn(DESKTOP, "chen");
  assert.match(await chen.page.textContent("#my-tasks"), /部门签收/);
  await shot(chen.page, "04-handler-list-desktop");
  await openTask(chen.page, "部门签收");
  assert.match(await chen.page.textContent(".context"), /井盖破损/, "the task shows what it is about");
  await chen.page.selectOption("#f-decision", "return");
  assert.ok(await chen.page.isVisible("#f-reason"), "sending back asks for a reason");
  await shot(chen.page, "05-task-form-desktop");
  await chen.page.selectOption("#f-decision", "accept");
  assert.ok(await chen.page.isHidden("#f-reason"), "the reason shows only when sending back");
  await submit(chen.page);
  await openTask(chen.page, "部门办理");
  await chen.page.fill("#f-summary", "已更换井盖并设置警示");
  await submit(chen.page);
  assert.equal(chen.page.url().replace(/\?.*$/, ""), ticketUrl);
  step("the handler sees it in the list and completes it");

  // 2b. What the handler did stays findable under 已办, with the ticket's number and line.
  await chen.page.goto(`${BASE}/done`);
  const done = await chen.page.textContent("#done-list");
  assert.match(done, /我办理了「部门办理」/);
  assert.match(done, /事件 \d{4}-\d{6}/, "a short number");
  assert.match(done, /井盖破损/, "the ticket's summary line");
  await chen.page.click('#done-list a:has-text("井盖破损")');
  assert.equal(chen.page.url(), ticketUrl);
  await chen.page.goto(`${BASE}/done`);
  await shot(chen.page, "12-done-list-desktop");
  step("the handler finds the ticket under 已办 after acting");

  // 3. The grid worker verifies on site.
  await openTask(wang.page, "网格核实");
  await wang.page.check('input[name="/resolved"][value="true"]');
  await submit(wang.page);
  step("the grid worker verifies it");

  // 4. The resident rates it on a phone.
  const zhou = await signIn(PHONE, "zhou");
  await openTask(zhou.page, "满意度评价");
  assert.equal((await zhou.page.$$("#f-score .stars label")).length, 5, "a 1-5 score as five stars");
  await zhou.page.click('label[for="f-score-5"]');
  await shot(zhou.page, "06a-rating-stars-phone");
  await submit(zhou.page);
  const detail = await zhou.page.textContent("main");
  assert.match(detail, /已办结/);
  assert.doesNotMatch(detail, /ticket-route-beichen/, "which plugin decided is for admins, not residents");
  assert.match(detail, /按规则「[^」]+」确定：区城市管理委员会/, "what the rule decided, in words");
  assert.match(detail, /按事件类别确定办理时限.*5 个工作日/, "a rule by what it decides, a limit in words");
  assert.match(detail, /限 (\d{4}年)?\d{1,2}月\d{1,2}日 \d{2}:\d{2} 前完成/, "each step's time limit in China time, as people write it");
  assert.match(detail, /周居民 完成了「满意度评价」/);
  await shot(zhou.page, "06-closed-timeline-phone");
  step("the resident rates it and sees the timeline");

  // 5. Another community's grid worker gets 404, for the page and for the task.
  const zhao = await signIn(PHONE, "zhao");
  const response = await zhao.page.goto(ticketUrl);
  assert.equal(response.status(), 404);
  assert.match(await zhao.page.textContent("main"), /未找到该页面/);
  await shot(zhao.page, "07-other-community-404");
  step("a person from another community gets 404 for the ticket");

  // 6. English on request; the choice sticks.
  await chen.page.goto(`${BASE}/tasks?lang=en`);
  assert.match(await chen.page.textContent("h1"), /My tasks/);
  await chen.page.goto(`${BASE}/mine`);
  assert.match(await chen.page.textContent("h1"), /Started by me/);
  // The generated form in English: field titles and choices from the workflow's `ui` hints.
  await wang.page.goto(`${BASE}/start/ticket?lang=en`);
  assert.match(await wang.page.textContent("h1"), /Incident ticket/);
  assert.match(await wang.page.textContent("#f-category"), /Roads and facilities/);
  await shot(wang.page, "08-english-form-phone");
  step("English is available and remembered");

  // 7. A one-time code from the server log signs in (demo mode).
  {
    const ctx = await browser.newContext(PHONE);
    const page = await ctx.newPage();
    await page.goto(`${BASE}/login`);
    await page.fill("#code-login", "li");
    await page.click("button[value=send_code]");
    assert.match(await page.textContent(".notice"), /验证码已发出/);
    let code;
    for (let i = 0; i < 20 && !code; i++) {
      const log = fs.readFileSync(process.env.SERVER_LOG, "utf8").replace(/\x1b\[[0-9;]*m/g, "");
      code = [...log.matchAll(/person=li code=(\d{6})/g)].pop()?.[1];
      if (!code) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(code, "the code is in the server log");
    await page.fill("#code", code);
    await page.click("button[value=code]");
    await page.waitForURL(/\/tasks$/);
    await ctx.close();
    step("a one-time code signs in");
  }

  // 9. A dispute goes to the street's dispatcher, who picks a department by its name (the
  // district's list, from its plugin), on a desktop.
  {
    await zhou.page.goto(`${BASE}/start/ticket`);
    await zhou.page.selectOption("#f-category", "dispute");
    await zhou.page.fill("#f-description", "楼上漏水引发邻里纠纷");
    await zhou.page.fill("#f-location", "果园社区2号楼");
    await submit(zhou.page);
    const li = await signIn(DESKTOP, "li");
    await openTask(li.page, "指挥中心派单");
    const options = await li.page.$$eval("#f-department option", (os) => os.map((o) => o.textContent.trim()));
    assert.ok(options.includes("区城市管理委员会") && options.includes("区水务局"), `departments by name: ${options}`);
    await li.page.selectOption("#f-department", "beichen-swj");
    assert.equal(await li.page.getAttribute("#f-deadline", "type"), "datetime-local", "a date and time picker");
    await li.page.fill("#f-deadline", "2026-12-31T17:00");
    await shot(li.page, "09-dispatch-by-name-desktop");
    await submit(li.page);
    assert.match(li.page.url(), /\/instances\/[^/?]+\?done=1$/);
    assert.match(await li.page.textContent("main"), /部门签收/);
    step("a dispatcher picks the department by its name");
  }

  // 10. Xincun grid 1 runs its own version of the report (workflows/overlays/): a required
  // households field and Xincun community's elderly-care category, which Guoyuan lacks.
  {
    await zhao.page.goto(`${BASE}/start/ticket`);
    assert.match(await zhao.page.textContent("form.card"), /涉及户数/);
    assert.match(await zhao.page.textContent("#f-category"), /养老服务/);
    await zhao.page.selectOption("#f-category", "elderly");
    await zhao.page.fill("#f-description", "独居老人家中无人应答");
    await zhao.page.fill("#f-location", "新村2号楼");
    assert.equal(await zhao.page.getAttribute("#f-households", "required"), "", "the grid's own required field");
    await zhao.page.fill("#f-households", "1");
    await shot(zhao.page, "10-overlay-form-phone");
    await submit(zhao.page);
    const detail = await zhao.page.textContent("main");
    assert.match(detail, /社区服务台受理/, "the community's own first desk");
    assert.match(detail, /新村社区调整第 1 版/, "the page says which local changes it runs with");
    await wang.page.goto(`${BASE}/start/ticket`);
    assert.doesNotMatch(await wang.page.textContent("form.card"), /涉及户数|养老服务/);
    step("a grid's own version of the report form, and its neighbour's default");
  }

  // 11. Verified on site as not solved: "no" is an answer, and the ticket goes back to the
  // department.
  {
    // Both chose English in step 6; back to Chinese (the choice is kept as their setting).
    await chen.page.goto(`${BASE}/tasks?lang=zh-CN`);
    await wang.page.goto(`${BASE}/start/ticket?lang=zh-CN`);
    await wang.page.selectOption("#f-category", "road");
    await wang.page.fill("#f-description", "路灯不亮，夜间看不清路");
    await wang.page.fill("#f-location", "果园路9号");
    await submit(wang.page);
    assert.match(wang.page.url(), /\/instances\/[^/?]+\?done=1$/, await wang.page.textContent("main"));
    const url = wang.page.url().replace(/\?.*$/, "");
    await openTask(chen.page, "部门签收");
    await chen.page.selectOption("#f-decision", "accept");
    await submit(chen.page);
    await openTask(chen.page, "部门办理");
    await chen.page.fill("#f-summary", "已检查线路");
    await submit(chen.page);
    await openTask(wang.page, "网格核实");
    const answers = await wang.page.$$eval('input[name="/resolved"]', (is) => is.map((i) => i.value));
    assert.deepEqual(answers, ["true", "false"], "a yes/no question, either answer possible");
    await wang.page.check('input[name="/resolved"][value="false"]');
    await wang.page.fill("#f-comment", "现场查看路灯仍不亮");
    await shot(wang.page, "11-verify-not-solved-phone");
    await submit(wang.page);
    assert.equal(wang.page.url().replace(/\?.*$/, ""), url);
    const detail = await wang.page.textContent("main");
    assert.match(detail, /问题已解决\s*否/, "the answer shows as 否");
    assert.match(await chen.page.goto(`${BASE}/tasks`).then(() => chen.page.textContent("#my-tasks")), /部门办理/, "back in the department's list");
    step("a ticket verified as not solved goes back to the department");
  }

  // 12. Sent back by the department: the street's dispatcher is told, in the inbox.
  {
    await wang.page.goto(`${BASE}/start/ticket`);
    await wang.page.selectOption("#f-category", "road");
    await wang.page.fill("#f-description", "人行道砖块松动");
    await wang.page.fill("#f-location", "果园路12号");
    await submit(wang.page);
    await openTask(chen.page, "部门签收");
    await chen.page.selectOption("#f-decision", "return");
    await chen.page.fill("#f-reason", "属于水务部门职责");
    await submit(chen.page);
    const li = await signIn(PHONE, "li");
    assert.match(await li.page.textContent("#nav-inbox"), /\d/, "an unread count in the header");
    await li.page.click("#nav-inbox");
    const inbox = await li.page.textContent("#inbox");
    assert.match(inbox, /事件被退回：属于水务部门职责/, "the notification's own text");
    await shot(li.page, "13-inbox-phone");
    await li.page.click('#inbox a:has-text("属于水务部门职责")');
    assert.match(li.page.url(), /\/instances\//);
    assert.match(await li.page.textContent("main"), /通知 李调度：事件被退回/, "the timeline names who was told");
    step("the dispatcher finds the sent-back notice in the inbox");
  }

  // 13. Volunteering on a phone: a volunteer signs up, the organiser shows the check-in QR
  // code, the volunteer's link checks in; from another activity the volunteer withdraws.
  {
    const activity = (title, startsInMs) => {
      const starts = new Date(Date.now() + startsInMs);
      return startAsFeng({
        workflow: "volunteering",
        unit: "guoyuan-c1",
        data: { title, kind: "regular", starts_at: starts.toISOString(), ends_at: new Date(starts.getTime() + 3 * 3600e3).toISOString(),
          capacity: 5, planned_hours: 3, location: "果园社区文化广场" },
      });
    };
    const today = await activity("果园社区环境清洁日", 6000);
    const later = await activity("敬老院探访", 30 * 24 * 3600e3);
    const song = await signIn(PHONE, "song");
    for (const id of [today, later]) {
      await song.page.goto(`${BASE}/instances/${id}`);
      assert.match(await song.page.textContent("main"), /还剩 5 个名额/, "places left before signing up");
      await song.page.click('a.button:has-text("办理")');
      await submit(song.page);
    }
    await song.page.goto(`${BASE}/instances/${later}`);
    assert.match(await song.page.textContent("main"), /还剩 4 个名额/);
    await Promise.all([song.page.waitForNavigation(), song.page.click("#withdraw")]);
    assert.match(await song.page.textContent("main"), /撤回/, "the withdrawal is on the timeline");
    await shot(song.page, "14-withdrawn-phone");
    // The activity starts (the scheduler closes sign-up and opens check-in).
    const feng = await signIn(PHONE, "feng");
    for (let i = 0; i < 40; i++) {
      await feng.page.goto(`${BASE}/instances/${today}`);
      if (await feng.page.$("#show-code")) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    await Promise.all([feng.page.waitForNavigation(), feng.page.click("#show-code")]);
    assert.ok(await feng.page.$("#checkin-qr svg"), "a QR code");
    await shot(feng.page, "15-checkin-qr-phone");
    const link = await feng.page.getAttribute("#checkin-link", "href");
    await song.page.goto(link.replace(/^https?:\/\/[^/]+/, BASE));
    assert.match(await song.page.textContent("main"), /已扫码/);
    await shot(song.page, "16-checkin-scanned-phone");
    await submit(song.page);
    assert.match(await song.page.textContent("main"), /宋志愿 在「签到」提交了登记/);
    step("a volunteer signs up, checks in with the organiser's QR code, and withdraws from another activity");
  }

  // 14. A vote proposal rejected by the community's secretary: "no" is an answer, with a
  // reason, and the proposer is told.
  {
    const vote = await startAsFeng({
      workflow: "vote",
      unit: "guoyuan-c1",
      data: { title: "更换小区大门", matter: "ordinary", opens_at: "2099-05-06T08:00:00+08:00", closes_at: "2099-05-13T20:00:00+08:00",
        roll: [{ household: "1-101", area: 90, owners: ["zhou"] }] },
    });
    const zheng = await signIn(DESKTOP, "zheng");
    await zheng.page.goto(`${BASE}/instances/${vote}`);
    await zheng.page.click('a.button:has-text("办理")');
    await zheng.page.check('input[name="/approve"][value="false"]');
    await zheng.page.fill("#f-reason", "名册需先与物业核对");
    await shot(zheng.page, "17-vote-rejected-desktop");
    await submit(zheng.page);
    assert.match(await zheng.page.textContent("main"), /未获批准|已办结/);
    const feng = await signIn(PHONE, "feng");
    await feng.page.goto(`${BASE}/inbox`);
    assert.match(await feng.page.textContent("#inbox"), /未获批准提交表决：名册需先与物业核对/);
    step("a vote proposal is rejected by the secretary and the proposer is told");
  }

  // 15. Overdue: a grid's own time limit (an overlay the district's admin publishes, of a
  // few seconds so the test need not wait a day) runs out, and the street's supervisor
  // finds the overdue notice in the inbox, in words.
  {
    const overlay = [
      "extends: ticket",
      "unit: guoyuan-c1-g1",
      "version: 1",
      "about: {zh-CN: 浏览器测试：部门签收限时数秒, en: \"Browser test, seconds to accept\"}",
      "states:",
      "  accept:",
      "    escalate:",
      "      - {id: supervisor, after: 3s}",
    ].join("\n");
    const [status, answer] = await apiPost(process.env.HE_TOKEN, "/api/overlays", { source: overlay, file: "browser.overlay.yaml" });
    assert.ok(status >= 200 && status < 300, answer);
    await wang.page.goto(`${BASE}/start/ticket`);
    await wang.page.selectOption("#f-category", "road");
    await wang.page.fill("#f-description", "路面积水无法通行");
    await wang.page.fill("#f-location", "果园路20号");
    await submit(wang.page);
    const li = await signIn(PHONE, "li");
    let inbox = "";
    for (let i = 0; i < 40 && !/路面积水无法通行」已超时未办结/.test(inbox); i++) {
      await new Promise((r) => setTimeout(r, 500));
      await li.page.goto(`${BASE}/inbox`);
      inbox = await li.page.textContent("#inbox");
    }
    assert.match(inbox, /事件「路面积水无法通行」已超时未办结，请督办。/, "the overdue notice's own text");
    await shot(li.page, "18-inbox-overdue-phone");
    step("the street's supervisor finds an overdue notice in the inbox");
  }

  // 16. A long list on a phone: the committee's handler has more than a page of tickets;
  // the page says how many, shows 50 and a 显示更多 button that brings the rest.
  {
    const report = { workflow: "ticket", unit: "guoyuan-c1-g1", data: { category: "road", description: "井盖缺失需要补装", location: "果园路8号" } };
    for (let i = 0; i < 55; i++) {
      const [status, answer] = await apiPost(process.env.WANG_TOKEN, "/api/instances", report);
      assert.equal(status, 201, answer);
    }
    const chen = await signIn(PHONE, "chen");
    await chen.page.goto(`${BASE}/tasks`);
    const total = Number((await chen.page.textContent("#task-total")).match(/\d+/)[0]);
    assert.ok(total >= 55, `the total counts every open task (${total})`);
    assert.equal(await chen.page.locator("#my-tasks li.item").count(), 50, "one page of 50");
    assert.ok(await chen.page.isVisible("#more"), "a button for the rest");
    await shot(chen.page, "19-long-list-phone");
    await chen.page.click("#more");
    await chen.page.waitForURL(/\/tasks\?after=/);
    assert.equal(await chen.page.locator("#my-tasks li.item").count(), total - 50, "the rest on the next page");
    step("a long task list comes in pages of 50 with its total and 显示更多");
  }

  // 17. The district's admin reads the event log of the district, narrows it to one
  // person, and verifies the record chains; a community's admin sees only theirs; nobody
  // else has the page.
  {
    const he = await signIn(DESKTOP, "he");
    await he.page.click("#nav-audit");
    await he.page.waitForURL(/\/admin\/audit$/);
    assert.ok((await he.page.locator("#audit-events li.item").count()) > 10, "the district's events");
    await he.page.fill('input[name="person"]', "李调度");
    await he.page.click('#audit-filters button[type="submit"]');
    await he.page.waitForURL(/person=/);
    const metas = await he.page.locator("#audit-events li.item .meta").allTextContents();
    assert.ok(metas.length > 0 && metas.every((m) => m.startsWith("李调度")), `only what 李调度 did: ${metas}`);
    await he.page.click("#audit-verify button");
    await he.page.waitForSelector(".notice");
    assert.match(await he.page.textContent(".notice"), /已核验 \d+ 个事项的记录链，全部完好/);
    await shot(he.page, "20-audit-verified-desktop");
    const tian = await signIn(PHONE, "tian");
    await tian.page.goto(`${BASE}/admin/audit`);
    const units = await tian.page.locator("#audit-events li.item .meta").allTextContents();
    assert.ok(units.every((m) => !m.includes("果园社区")), `only 新村社区's events: ${units}`);
    await shot(tian.page, "21-audit-community-phone");
    const response = await wang.page.goto(`${BASE}/admin/audit`);
    assert.equal(response.status(), 404);
    assert.equal(await wang.page.locator("#nav-audit").count(), 0);
    step("an admin searches the event log of their units and verifies it; others cannot");
  }

  // 18. The district's admin opens 统计 for tickets: the figures the page shows are the
  // ones its CSV export gives, and the charts are drawn beside their tables.
  {
    const he = await signIn(DESKTOP, "he");
    await he.page.click("#nav-dashboard");
    await he.page.waitForURL(/\/admin\/dashboard$/);
    await he.page.selectOption('#dashboard-filters select[name="workflow"]', "ticket");
    await he.page.click('#dashboard-filters button[type="submit"]');
    await he.page.waitForURL(/workflow=ticket/);
    const cell = async (label) =>
      (await he.page.locator(`#dashboard-headline tr:has(th:text-is("${label}")) td`).textContent()).trim();
    const started = Number(await cell("受理"));
    assert.ok(started >= 55, `the tickets reported so far are counted (${started})`);
    assert.ok(await he.page.isVisible("#chart-closure svg"), "a pie of closed and open");
    assert.ok(await he.page.isVisible("#chart-weeks svg"), "a line of starts per week");
    await shot(he.page, "22-dashboard-desktop");
    const csv = await he.page.evaluate(async (href) => (await fetch(href)).text(), await he.page.getAttribute("#dashboard-csv", "href"));
    assert.ok(csv.includes(`总体情况,受理,${started}`), `the export says the same: ${csv.slice(0, 200)}`);
    const tian = await signIn(PHONE, "tian");
    await tian.page.goto(`${BASE}/admin/dashboard?workflow=ticket`);
    const theirs = Number((await tian.page.locator('#dashboard-headline tr:has(th:text-is("受理")) td').textContent()).trim());
    assert.ok(theirs < started, `a community counts its own only (${theirs} of ${started})`);
    await shot(tian.page, "23-dashboard-phone");
    step("an admin's dashboard counts their units, draws charts beside tables, and exports the same figures");
  }

  // 8. The session's CSRF token is required on every form.
  {
    const status = await wang.page.evaluate(async () => {
      const r = await fetch("/logout", { method: "POST", body: new URLSearchParams({ _csrf: "forged" }) });
      return r.status;
    });
    assert.equal(status, 403);
    step("a form without the session's CSRF token is refused");
  }
  console.log(`${passed} browser checks passed; screenshots in ${SHOTS}`);
} finally {
  await browser.close();
}
