// Checks one page of Sobre's in a real browser (Debian's headless Chromium,
// driven by playwright-core), at phone and desktop widths: console and page
// errors, failed requests, third-party requests, bytes transferred,
// horizontal overflow, axe-core's serious or critical violations, and (on
// the desktop) whether Tab reaches every link, button and field; and
// once more at phone width with JavaScript disabled (the same checks: the
// page must be whole without script).
//
//   node tests/browser/check-page.mjs <url> [--max-bytes N] [--screenshots DIR]
//
// --screenshots DIR saves a full-page PNG per viewport as DIR/<name>.png
// (test artefacts) and names it in the viewport's `screenshot`.
// Prints one JSON object on stdout. Exit 0: every check passed; 1: some
// check failed (the JSON says which); 2: usage or launch error (stderr says
// why). The browser is never downloaded: CHROMIUM (default /usr/bin/chromium)
// must exist; tests/run installs Debian's package.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

// The widths issue #10 asks for: an old phone and a common laptop.
const VIEWPORTS = [
  { name: 'phone', width: 360, height: 740, mobile: true, js: true },
  { name: 'desktop', width: 1280, height: 900, mobile: false, js: true },
  { name: 'phone-nojs', width: 360, height: 740, mobile: true, js: false },
];
// As root on a closed network: no sandbox, and nothing of Chromium's own
// phoning home (its refused connections would otherwise make it fail).
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TIMEOUT_MS = 30_000;

// Exit 2: the check could not run (as opposed to 1: it ran and found problems).
function fail(msg) {
  process.stderr.write(`check-page: ${msg}\n`);
  process.exit(2);
}

function usage(msg) {
  fail(`${msg}\nusage: node check-page.mjs <url> [--max-bytes N] [--screenshots DIR]`);
}

function parseArgs(argv) {
  let url = null;
  let maxBytes = null;
  let screenshots = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--max-bytes') {
      const n = Number(argv[++i]);
      if (!Number.isSafeInteger(n) || n < 0) usage(`--max-bytes needs a byte count, got ${argv[i]}`);
      maxBytes = n;
    } else if (argv[i] === '--screenshots') {
      screenshots = argv[++i];
      if (!screenshots) usage('--screenshots needs a folder');
    } else if (url === null && !argv[i].startsWith('--')) {
      url = argv[i];
    } else {
      usage(`unexpected argument ${argv[i]}`);
    }
  }
  if (url === null) usage('missing <url>');
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') usage(`not an http(s) URL: ${url}`);
  } catch {
    usage(`not a URL: ${url}`);
  }
  return { url, maxBytes, screenshots };
}

// Only network requests count: data: and blob: URLs never leave the page.
function isNetwork(url) {
  return /^(https?|wss?):/.test(url);
}

async function checkViewport(browser, url, vp, axeSource, screenshots) {
  const origin = new URL(url).origin;
  // bypassCSP: axe is injected as an inline script, which a strict
  // Content-Security-Policy (as a sober page should have) would refuse.
  const context = await browser.newContext({
    viewport: { width: vp.width, height: vp.height },
    isMobile: vp.mobile,
    hasTouch: vp.mobile,
    bypassCSP: true,
    javaScriptEnabled: vp.js,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  const r = {
    name: vp.name,
    width: vp.width,
    height: vp.height,
    javascript: vp.js,
    status: null,
    load_error: null,
    console_errors: [],
    third_party_requests: [],
    failed_requests: [],
    bytes: 0,
    scroll_width: null,
    horizontal_overflow: false,
    violations: [],
    unreachable_by_keyboard: [],
    screenshot: null,
  };
  const sizes = [];
  page.on('console', (m) => {
    if (m.type() === 'error') {
      const loc = m.location();
      r.console_errors.push(loc && loc.url ? `${m.text()} (${loc.url}:${loc.lineNumber})` : m.text());
    }
  });
  page.on('pageerror', (e) => r.console_errors.push(`uncaught: ${e.message}`));
  page.on('request', (req) => {
    const u = req.url();
    if (isNetwork(u) && new URL(u).origin !== origin) r.third_party_requests.push(u);
  });
  page.on('requestfailed', (req) => {
    r.failed_requests.push(`${req.url()}: ${req.failure()?.errorText ?? 'failed'}`);
  });
  page.on('requestfinished', (req) => {
    sizes.push(
      req.sizes().then(
        (s) => s.responseHeadersSize + s.responseBodySize,
        () => 0,
      ),
    );
    sizes.push(
      req.response().then((res) => {
        if (res && res.status() >= 400) r.failed_requests.push(`${req.url()}: HTTP ${res.status()}`);
        return 0;
      }),
    );
  });
  // Third-party requests are recorded above and then refused here, so a
  // page that would call out is caught without waiting on the network.
  await context.route(
    (u) => isNetwork(u.href) && u.origin !== origin,
    (route) => route.abort('blockedbyclient'),
  );

  try {
    const res = await page.goto(url, { waitUntil: 'load' });
    r.status = res ? res.status() : null;
    // A page that keeps polling never goes idle; it is then checked as it is.
    await page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {});
  } catch (e) {
    r.load_error = e.message.split('\n')[0];
  }
  if (r.load_error === null) {
    const w = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
    }));
    r.scroll_width = w.scroll;
    r.horizontal_overflow = w.scroll > w.client;
    if (screenshots) {
      mkdirSync(screenshots, { recursive: true });
      r.screenshot = join(screenshots, `${vp.name}.png`);
      await page.screenshot({ path: r.screenshot, fullPage: true });
    }
  }
  // axe-core is a script: it runs in the passes with JavaScript (the page
  // is the same HTML in the one without).
  if (r.load_error === null && vp.js) {
    await page.addScriptTag({ content: axeSource });
    r.violations = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const res = await axe.run(document, { resultTypes: ['violations'] });
      return res.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.html.slice(0, 160)}`),
        }));
    });
  }
  // Keyboard only (desktop pass): Tab must reach every visible link,
  // button and form field, in some order.
  if (r.load_error === null && vp.name === 'desktop') {
    const total = await page.evaluate(() => {
      const sel =
        'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
      let i = 0;
      for (const el of document.querySelectorAll(sel)) {
        // checkVisibility: not rendered, e.g. inside a closed <details>.
        if (el.disabled || !el.checkVisibility({ visibilityProperty: true })) continue;
        el.dataset.kbd = String(i++);
      }
      return i;
    });
    const reached = new Set();
    // A date-time field takes a Tab per part (day, month, year, hours,
    // minutes): room for that, stopping as soon as all are reached.
    for (let n = 0; n < total * 6 + 10 && reached.size < total; n++) {
      await page.keyboard.press('Tab');
      const k = await page.evaluate(() => document.activeElement?.dataset?.kbd ?? null);
      if (k !== null) reached.add(k);
    }
    r.unreachable_by_keyboard = await page.evaluate(
      (got) =>
        [...document.querySelectorAll('[data-kbd]')]
          .filter((el) => !got.includes(el.dataset.kbd))
          .map((el) => el.outerHTML.replace(/ data-kbd="\d+"/, '').slice(0, 120)),
      [...reached],
    );
  }
  r.bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
  await context.close();
  return r;
}

function passed(r, maxBytes) {
  return (
    r.load_error === null &&
    r.status !== null &&
    r.status < 400 &&
    r.console_errors.length === 0 &&
    r.third_party_requests.length === 0 &&
    r.failed_requests.length === 0 &&
    (maxBytes === null || r.bytes <= maxBytes) &&
    !r.horizontal_overflow &&
    r.violations.length === 0 &&
    r.unreachable_by_keyboard.length === 0
  );
}

async function main() {
  const { url, maxBytes, screenshots } = parseArgs(process.argv.slice(2));
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    fail(`chromium not found at ${executablePath}: apt-get install chromium (or set CHROMIUM)`);
  }
  const require = createRequire(import.meta.url);
  let axeSource;
  try {
    axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  } catch (e) {
    fail(`axe-core is not installed (npm ci --prefix tests/browser): ${e.message}`);
  }
  // launch() gives Chromium a fresh, empty --user-data-dir in the temp
  // folder and removes it on close.
  let browser;
  try {
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true, timeout: 60_000 });
  } catch (e) {
    fail(`cannot start ${executablePath}: ${e.message.split('\n')[0]}`);
  }
  const out = { url, max_bytes: maxBytes, ok: true, viewports: [] };
  try {
    for (const vp of VIEWPORTS) {
      const r = await checkViewport(browser, url, vp, axeSource, screenshots);
      out.ok &&= passed(r, maxBytes);
      out.viewports.push(r);
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  process.exit(out.ok ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`check-page: ${e.stack || e}\n`);
  process.exit(2);
});
