// The portal in a real browser (tests/integration/test_portal.sh runs it):
// playwright-core drives Debian's chromium headless; axe-core checks each
// page; a screenshot of each page goes to $SHOTS. Prints "ok   - ..." /
// "FAIL - ..." lines that the shell test counts, and "browser done".
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const env = process.env;
const BASE = env.BASE;
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
let failed = 0;
const ok = (cond, what) => { console.log(`${cond ? 'ok   -' : 'FAIL -'} ${what}`); if (!cond) failed++; return cond; };

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of an otpauth URI's secret
function totp(uri, at = Date.now()) {
  const secret = new URL(uri).searchParams.get('secret');
  const alpha = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of secret.replace(/=+$/, '').toUpperCase()) bits += alpha.indexOf(ch).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const off = mac[mac.length - 1] & 15;
  const code = (mac.readUInt32BE(off) & 0x7fffffff) % 1000000;
  return String(code).padStart(6, '0');
}

const browser = await chromium.launch({ executablePath: env.CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const cspViolations = [];
const pageErrors = [];
async function newPage(viewport) {
  const ctx = await browser.newContext({ viewport, acceptDownloads: true, locale: 'en-GB' });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`page error: ${e.message}`); });
  return page;
}

async function check(page, name) {
  await page.screenshot({ path: `${env.SHOTS}/${name}.png`, fullPage: true });
  await page.evaluate(axeSource);
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of bad) console.log(`axe ${name}: ${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`);
  ok(bad.length === 0, `axe-core: no serious violation on the ${name} page`);
  const vw = page.viewportSize().width;
  if (vw < 400) {
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    ok(w <= vw + 5, `phone-sized layout of the ${name} page: no horizontal scrolling (${w}px in ${vw})`);
  }
}

async function staffLogin(page, token) {
  await page.goto(`${BASE}/`);
  await page.waitForSelector('body[data-ready="1"]');
  if (await page.isVisible('#logout')) await logout(page);
  await page.fill('input[name=token]', token);
  await page.click('section:has(#staff-h) button[type=submit]');
  await page.waitForSelector('#logout:not([hidden])');
}

async function logout(page) {
  await page.click('#logout');
  await page.waitForSelector('input[name=token]');
}

// poppler's pdfsig with the NSS db that trusts our root (test_portal.sh makes it)
function pdfsig(file) {
  try {
    return execFileSync('pdfsig', ['-nssdir', `sql:${env.NSSDB}`, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    return `${e.stdout || ''}${e.stderr || ''}`;
  }
}

// the first signature of POST /api/v1/validate's report
async function validate(bytes, type = 'application/pdf', name = 'signed.pdf') {
  const form = new FormData();
  form.append('file', new Blob([bytes], { type }), name);
  const r = await fetch(`${BASE}/api/v1/validate`, { method: 'POST', body: form });
  const j = await r.json();
  return j.signatures && j.signatures[0];
}

// clicks every download button of the sign page, saves each file under
// downloads/ by its suggested name; the names in order
async function saveAll(p) {
  const buttons = p.locator('[data-testid=signed-download]');
  const names = [];
  mkdirSync(`${env.T_DIR}/downloads`, { recursive: true });
  for (let i = 0; i < await buttons.count(); i++) {
    const [d] = await Promise.all([p.waitForEvent('download'), buttons.nth(i).click()]);
    await d.saveAs(`${env.T_DIR}/downloads/${d.suggestedFilename()}`);
    names.push(d.suggestedFilename());
  }
  return names;
}

// the package as the overview page shows it
async function quota(p) {
  await p.waitForSelector('[data-field=signatures_left], section:has(#pkg-h) .error');
  if (!await p.isVisible('[data-field=signatures_left]')) return { error: await p.textContent('section:has(#pkg-h) .error') };
  return {
    package: await p.textContent('[data-field=package]'),
    left: await p.getAttribute('[data-field=signatures_left]', 'data-value'),
    used: await p.textContent('[data-field=used]'),
  };
}

// the sign page with files picked (the test PDF by default; each SHA-256 shown)
async function openSign(p, files = [`${env.T_DIR}/doc.pdf`]) {
  await p.goto(`${BASE}/#/sign`);
  await p.reload();
  await p.waitForSelector('input[name=files]');
  await p.setInputFiles('input[name=files]', files);
  await p.waitForFunction((n) => document.querySelectorAll('[data-testid=hashes] li').length === n, files.length);
}

// A code the server has not accepted yet: a step after the last one used,
// within its window (policies/signing.yaml otp.window steps either side:
// OTP_WINDOW, 2 in the test home); waits for the clock when the next step
// is not yet in reach.
let lastStep = 0;
const otpWindow = Number(env.OTP_WINDOW || 1);
async function freshCode(uri) {
  for (;;) {
    const now = Math.floor(Date.now() / 30000);
    if (now + otpWindow > lastStep) {
      lastStep = Math.max(now, lastStep + 1);
      return totp(uri, lastStep * 30000 + 500);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// submits the sign form with code (format, at level): 'signed' or the error shown
async function trySign(p, code, level, format = 'pades') {
  await p.selectOption('select[name=format]', format);
  if (level) await p.selectOption('select[name=level]', level);
  await p.fill('input[name=otp]', code);
  await p.evaluate(() => document.querySelectorAll('form .msg p, [data-testid=signed-download]').forEach((e) => e.remove()));
  await p.click('form button[type=submit]');
  const got = await p.waitForSelector('[data-testid=signed-download], form .msg .error', { timeout: 60000 });
  return (await got.getAttribute('data-testid')) === 'signed-download' ? 'signed' : got.textContent();
}

const page = await newPage({ width: 1100, height: 900 });
const phone = await newPage({ width: 375, height: 740 });
const nid = `80${String(Date.now()).slice(-8)}`;
const tel = `+35988${nid.slice(-7)}`;
let act = null;
try {
  // the login page
  await page.goto(`${BASE}/`);
  await page.waitForSelector('body[data-ready="1"]');
  ok(await page.isVisible('input[name=user]') && await page.isVisible('input[name=token]'), 'the login page offers signer and staff log in');
  await check(page, 'login');
  await page.selectOption('#lang', 'bg');
  await page.waitForSelector('h1:has-text("Вход")');
  ok(true, 'the page switches to Bulgarian');
  await check(page, 'login-bg');
  await page.selectOption('#lang', 'en');
  await page.waitForSelector('h1:has-text("Log in")');
  const storage = await page.evaluate(() => JSON.stringify(Object.assign({}, localStorage, sessionStorage)));

  // a wrong token
  await page.fill('input[name=token]', 'qtsp_wrong');
  await page.click('section:has(#staff-h) button[type=submit]');
  await page.waitForSelector('section:has(#staff-h) .error');
  ok(/not valid/.test(await page.textContent('section:has(#staff-h) .error')), 'a wrong operator token is refused in plain words');

  // RA officer: enrol with evidence, issue, activation data once with the QR code
  await staffLogin(page, env.OFFICER);
  ok(page.url().endsWith('#/enrol'), 'the RA officer lands on the enrolment page');
  const cookies = await page.context().cookies();
  const sc = cookies.find((c) => c.name === 'qtsp_session');
  ok(sc && sc.httpOnly && sc.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
  ok(await page.evaluate(() => !document.cookie.includes('qtsp_session')), 'page scripts cannot read the session cookie');
  const fill = { given_name: 'Maria', surname: 'Ivanova', country: 'BG', national_id: nid, email: 'maria@example.bg', phone: tel, document_type: 'id-card', document_number: 'AA1234567' };
  for (const [k, v] of Object.entries(fill)) await page.fill(`input[name=${k}]`, v);
  await page.selectOption('select[name=package]', 'practical');
  await check(page, 'enrol');
  await page.click('form button[type=submit]');
  await page.waitForSelector('button:has-text("Issue the certificate")');
  await page.click('button:has-text("Issue the certificate")');
  await page.waitForSelector('[data-testid=activation]');
  act = {
    serial: await page.textContent('[data-field=serial]'),
    user: await page.textContent('[data-field=user_id]'),
    password: await page.textContent('[data-field=password]'),
    uri: await page.textContent('[data-field=otpauth_uri]'),
  };
  ok(/^[0-9a-f]+$/.test(act.serial) && act.user && act.password && act.uri.startsWith('otpauth://totp/'), 'issuance shows serial, user id, password and the otpauth URI');
  ok(await page.locator('.qr svg path').count() === 1 && (await page.getAttribute('.qr svg path', 'd')).length > 500, 'the otpauth QR code is drawn');
  await check(page, 'activation');
  await page.click('button:has-text("Done")');
  ok(!(await page.textContent('main')).includes(act.password), 'Done clears the activation data from the screen');
  await logout(page);
  ok(!storage.includes('qtsp_') && !(await page.evaluate(() => JSON.stringify(Object.assign({}, localStorage, sessionStorage)))).includes(env.OFFICER), 'no credential in localStorage or sessionStorage');

  // signer (CSC API v2 and /api/v1, on a phone-sized screen)
  const csc = (await fetch(`${BASE}/csc/v2/info`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).status;
  const hasSigner = ok(csc === 200, 'the server has the CSC API (POST /csc/v2/info: 200)');
  if (hasSigner) {
    await phone.goto(`${BASE}/`);
    await phone.waitForSelector('body[data-ready="1"]');
    await phone.fill('input[name=user]', act.user);
    await phone.fill('input[name=password]', act.password);
    await phone.click('section:has(#signer-h) button[type=submit]');
    await phone.waitForSelector('[data-credential]');
    ok(await phone.getAttribute('[data-credential] [data-status]', 'data-status') === 'valid', 'the signer sees their certificate valid');
    const pkg0 = await quota(phone);
    ok(pkg0.package === 'practical' && pkg0.left === '6' && pkg0.used === '0', `the signer sees their package and what is left (${JSON.stringify(pkg0)})`);
    await check(phone, 'signer-overview');

    await phone.goto(`${BASE}/#/documents`);
    await phone.waitForSelector('main h1:has-text("My documents")');
    await phone.waitForSelector('[data-testid=no-documents], main table, main .error');
    ok(env.DOCUMENTS === '1' && await phone.isVisible('[data-testid=no-documents]'), 'my documents (GET /api/v1/documents): none before the first signing');
    await check(phone, 'documents-empty');

    await openSign(phone);
    const shown = await phone.textContent('[data-testid=hashes] li');
    ok(shown.includes(env.PDF_SHA256 || '-'), 'the document\'s SHA-256 is shown');
    // a wrong code
    const wrong = totp(act.uri, Date.now() + 3600 * 1000);
    let said = await trySign(phone, wrong === totp(act.uri) ? '000000' : wrong);
    ok(/one-time code is wrong/.test(said), `a wrong code is refused on the page in plain words (${said})`);
    await check(phone, 'sign');
    // the right code
    if (ok(env.SIGNDOC === '1', 'the server serves POST /csc/v2/signatures/signDoc')) {
      const code = await freshCode(act.uri);
      said = await trySign(phone, code, 'Ades-B-T');
      if (ok(said === 'signed', `signing the PDF (PAdES B-T) with the right code (${said})`)) {
        const [dl] = await Promise.all([phone.waitForEvent('download'), phone.click('[data-testid=signed-download]')]);
        mkdirSync(`${env.T_DIR}/downloads`, { recursive: true });
        await dl.saveAs(`${env.T_DIR}/downloads/signed.pdf`);
        ok(/\.pdf$/.test(dl.suggestedFilename()), `the signed PDF was downloaded (${dl.suggestedFilename()})`);
        // checked now, while the certificate is valid (it is terminated below)
        const signedPdf = readFileSync(`${env.T_DIR}/downloads/signed.pdf`);
        const original = readFileSync(`${env.T_DIR}/doc.pdf`);
        ok(signedPdf.length > original.length && signedPdf.subarray(0, original.length).equals(original), 'the signed PDF keeps the original bytes as its first revision');
        const ps = pdfsig(`${env.T_DIR}/downloads/signed.pdf`);
        ok(/Signature Validation: Signature is Valid/.test(ps) && /Certificate Validation: Certificate is Trusted/.test(ps),
          `pdfsig accepts the PDF signed in the browser: signature valid, certificate trusted (${ps.replace(/\s+/g, ' ').slice(0, 300)})`);
        ok(/Signature Type: ETSI\.CAdES\.detached/.test(ps), 'pdfsig: /SubFilter ETSI.CAdES.detached (PAdES)');
        const v = await validate(signedPdf);
        ok(v && v.indication === 'TOTAL-PASSED' && v.level === 'B-T', `POST /api/v1/validate: TOTAL-PASSED, PAdES B-T (${v && `${v.indication} ${v.format} ${v.level}`})`);
        await check(phone, 'sign-done');
      }
      // the same code again
      said = await trySign(phone, code, 'Ades-B-T');
      ok(/already used/.test(said), `a replayed code is refused on the page in plain words (${said})`);

      // two files of any type at once, CAdES (enveloping) B-B: openssl cms
      // verifies each against our root and gives back the file
      writeFileSync(`${env.T_DIR}/note.txt`, 'A note signed in the portal.\n');
      writeFileSync(`${env.T_DIR}/data.bin`, Buffer.from([0, 1, 2, 3, 254, 255, 10, 13]));
      await openSign(phone, [`${env.T_DIR}/note.txt`, `${env.T_DIR}/data.bin`]);
      said = await trySign(phone, await freshCode(act.uri), 'Ades-B-B', 'cades');
      if (ok(said === 'signed', `signing two files at once (CAdES B-B) (${said})`)) {
        const buttons = phone.locator('[data-testid=signed-download]');
        ok(await buttons.count() === 2, 'one download per file');
        for (const [i, f] of [[0, 'note.txt'], [1, 'data.bin']]) {
          const [d] = await Promise.all([phone.waitForEvent('download'), buttons.nth(i).click()]);
          const out = `${env.T_DIR}/downloads/${d.suggestedFilename()}`;
          await d.saveAs(out);
          const back = `${env.T_DIR}/downloads/${f}.content`;
          let verified = '';
          try {
            execFileSync('openssl', ['cms', '-verify', '-inform', 'DER', '-in', out, '-CAfile', env.ROOT, '-purpose', 'any', '-out', back], { stdio: ['ignore', 'pipe', 'pipe'] });
            verified = readFileSync(back).equals(readFileSync(`${env.T_DIR}/${f}`)) ? 'ok' : 'content differs';
          } catch (e) {
            verified = `${e.stderr || e.message}`.split('\n')[0];
          }
          ok(verified === 'ok' && d.suggestedFilename() === `${f}.p7m`, `openssl cms -verify accepts ${d.suggestedFilename()} and gives back ${f} (${verified})`);
        }
      }

      // XAdES: an XML file (enveloped) and a text file (enveloping) at once;
      // xmlsec1 verifies each against our root
      writeFileSync(`${env.T_DIR}/order.xml`, '<?xml version="1.0" encoding="UTF-8"?>\n<order id="42"><item>paper</item><qty>3</qty></order>\n');
      await openSign(phone, [`${env.T_DIR}/order.xml`, `${env.T_DIR}/note.txt`]);
      said = await trySign(phone, await freshCode(act.uri), 'Ades-B-B', 'xades');
      if (ok(said === 'signed', `signing an XML and a text file as XAdES B-B (${said})`)) {
        const files = await saveAll(phone);
        ok(files.join(' ') === 'order-signed.xml note.txt.xml', `one signed XML per file (${files.join(' ')})`);
        for (const f of files) {
          let r = 'ok';
          try {
            execFileSync('xmlsec1', ['--verify', '--trusted-pem', env.ROOT, '--untrusted-pem', env.ISSUING, '--id-attr:Id', 'http://uri.etsi.org/01903/v1.3.2#:SignedProperties', `${env.T_DIR}/downloads/${f}`], { stdio: ['ignore', 'pipe', 'pipe'] });
          } catch (e) {
            r = `${e.stderr || e.message}`.split('\n').filter(Boolean).pop();
          }
          ok(r === 'ok', `xmlsec1 --verify accepts ${f} (${r})`);
        }
        const order = readFileSync(`${env.T_DIR}/downloads/order-signed.xml`, 'utf8');
        ok(/<order id="42">/.test(order) && /<ds:Signature|<Signature/.test(order), 'the XML file carries its signature inside (enveloped)');
      }
      // ASiC-E (XAdES inside): the container's first entry is its mimetype,
      // and the validation service passes it
      await openSign(phone, [`${env.T_DIR}/note.txt`]);
      said = await trySign(phone, await freshCode(act.uri), 'Ades-B-B', 'asic');
      if (ok(said === 'signed', `signing a text file into an ASiC-E container (${said})`)) {
        const [f] = await saveAll(phone);
        const z = `${env.T_DIR}/downloads/${f}`;
        const first = execFileSync('unzip', ['-Z1', z], { encoding: 'utf8' }).split('\n')[0];
        const mt = execFileSync('unzip', ['-p', z, 'mimetype'], { encoding: 'utf8' });
        ok(f === 'note.asice' && first === 'mimetype' && mt === 'application/vnd.etsi.asic-e+zip', `${f}: first entry mimetype, ${mt}`);
        const v = await validate(readFileSync(z), 'application/vnd.etsi.asic-e+zip', f);
        ok(v && v.indication === 'TOTAL-PASSED', `POST /api/v1/validate passes the container (${v && `${v.indication} ${v.format} ${v.level}`})`);
      }

      // a file over the request limit (documents_max_body: 64 KiB in the
      // test home): refused in plain words, nothing signed
      writeFileSync(`${env.T_DIR}/big.bin`, Buffer.alloc(100 * 1024, 7));
      await openSign(phone, [`${env.T_DIR}/big.bin`]);
      said = await trySign(phone, await freshCode(act.uri), 'Ades-B-B', 'cades');
      ok(/too large/.test(said), `a file over the limit is refused in plain words (${said})`);

      // the package (6 signatures in this test's policy) is spent: a fresh
      // code authorises, the signing is refused
      await openSign(phone);
      said = await trySign(phone, await freshCode(act.uri), 'Ades-B-T');
      ok(/package is spent/.test(said), `a spent package is explained in plain words (${said})`);
      await check(phone, 'sign-spent');

      await phone.goto(`${BASE}/#/me`);
      await phone.reload();
        const pkg1 = await quota(phone);
      ok(pkg1.left === '0' && pkg1.used === '6', `the package counts the six signatures (${JSON.stringify(pkg1)})`);
      // pages of 3 here (history_page): "More" follows "next" and goes after the last page
      ok(await phone.locator('section:has(#hist-h) tbody tr').count() === 3, 'the history shows its first page of three');
      await phone.click('[data-testid=history-more]');
      await phone.waitForSelector('[data-testid=history-more]', { state: 'detached' });
      ok(await phone.locator('section:has(#hist-h) tbody tr').count() === 4, 'the history shows the four signings after "More"');

      await phone.goto(`${BASE}/#/documents`);
      await phone.waitForSelector('[data-document], [data-testid=no-documents], main .error');
      ok(await phone.locator('tr[data-document]').count() === 3, 'my documents shows its first page of three');
      await phone.click('[data-testid=documents-more]');
      await phone.waitForSelector('[data-testid=documents-more]', { state: 'detached' });
      ok(await phone.locator('tr[data-document]').count() === 6, 'my documents lists the six signed documents after "More"');
      const rows = phone.locator('tr[data-document]:has-text("PAdES")');
      ok(await rows.count() === 1, 'my documents lists the signed PDF');
      const cells = await rows.first().textContent();
      ok(/PAdES/i.test(cells) && /B-T/.test(cells), `... as PAdES B-T (${cells})`);
      await check(phone, 'documents');
      const [dl2] = await Promise.all([phone.waitForEvent('download'), rows.first().locator('button').click()]);
      mkdirSync(`${env.T_DIR}/downloads`, { recursive: true });
      await dl2.saveAs(`${env.T_DIR}/downloads/archived.pdf`);
      const archived = readFileSync(`${env.T_DIR}/downloads/archived.pdf`);
      ok(archived.equals(readFileSync(`${env.T_DIR}/downloads/signed.pdf`)), 'the PDF downloaded from my documents is the signed one, byte for byte');
    }
    // change the password: every token ends, the page logs out; the new
    // password logs in
    await phone.goto(`${BASE}/#/password`);
    await phone.waitForSelector('input[name=old_password]');
    await check(phone, 'password');
    const newPassword = `portal test ${nid} passphrase`;
    await phone.fill('input[name=old_password]', act.password);
    await phone.fill('input[name=new_password]', newPassword);
    await phone.fill('input[name=again]', newPassword);
    await phone.click('form button[type=submit]');
    await phone.waitForSelector('[data-testid=flash], form .error');
    ok(await phone.isVisible('[data-testid=flash]') && await phone.isVisible('input[name=user]'), 'the password change logs out and says so');
    await phone.fill('input[name=user]', act.user);
    await phone.fill('input[name=password]', act.password);
    await phone.click('section:has(#signer-h) button[type=submit]');
    await phone.waitForSelector('section:has(#signer-h) .error');
    ok(/wrong/.test(await phone.textContent('section:has(#signer-h) .error')), 'the old password no longer logs in');
    act.password = newPassword;
    await phone.fill('input[name=password]', act.password);
    await phone.click('section:has(#signer-h) button[type=submit]');
    await phone.waitForSelector('[data-credential]');
    ok(true, 'the new password logs in');
  }

  // hotline: find by national id + phone, hold
  await staffLogin(page, env.HOTLINE);
  ok(page.url().endsWith('#/hotline'), 'the hotline agent lands on the hold page');
  await page.fill('input[name=national_id]', nid);
  await page.fill('input[name=phone]', tel);
  await page.fill('input[name=caller_verification]', 'code word and date of birth');
  await page.click('form button[type=submit]');
  await page.waitForSelector('form .okmsg');
  ok((await page.textContent('form .okmsg')).includes(act.serial), 'the hotline holds the caller\'s certificate');
  await check(page, 'hotline');
  await logout(page);

  if (hasSigner) {
    await phone.goto(`${BASE}/#/me`);
    await phone.reload();
    await phone.waitForSelector('[data-credential] [data-status]');
    ok(await phone.getAttribute('[data-credential] [data-status]', 'data-status') === 'on-hold', 'the signer\'s page shows the certificate on hold');
    await openSign(phone);
    const said = await trySign(phone, totp(act.uri));
    ok(/on hold/.test(said), `signing with a held certificate is refused in plain words (${said})`);
    await check(phone, 'sign-held');
  }

  // office: find the person, release, terminate with reason and identity check
  await staffLogin(page, env.OFFICE);
  await page.selectOption('select[name=by]', 'national_id');
  await page.fill('input[name=q]', nid);
  await page.click('form button[type=submit]');
  await page.waitForSelector('button:has-text("Certificates")');
  ok((await page.textContent('table')).includes('Maria Ivanova'), 'the office finds the person by national id');
  await page.click('button:has-text("Certificates")');
  const row = `tr[data-serial="${act.serial}"]`;
  await page.waitForSelector(`${row} [data-status=on-hold]`);
  ok(true, 'the office sees the certificate on hold');
  await check(page, 'office');
  await page.click(`${row} button:has-text("Release")`);
  await page.waitForSelector(`${row} [data-status=valid]`);
  ok(true, 'the office releases it');
  await page.click(`${row} button:has-text("Terminate")`);
  await page.selectOption('select[name=reason]', 'keyCompromise');
  await page.click('button:has-text("Terminate for good")');
  ok(await page.locator('input[name=identity_check]:invalid').count() === 1, 'terminate needs the identity check');
  await page.fill('input[name=identity_check]', 'passport seen at the counter');
  await check(page, 'office-terminate');
  await page.click('button:has-text("Terminate for good")');
  await page.waitForSelector(`${row} [data-status=revoked]`);
  ok(true, 'the office terminates: the certificate shows revoked');
  await logout(page);

  if (hasSigner) {
    await phone.goto(`${BASE}/#/me`);
    await phone.reload();
    await phone.waitForSelector('[data-credential] [data-status]');
    ok(await phone.getAttribute('[data-credential] [data-status]', 'data-status') === 'revoked', 'the signer\'s page then shows the certificate revoked');
    await check(phone, 'signer-revoked');
    await openSign(phone);
    const said = await trySign(phone, totp(act.uri));
    ok(/revoked/.test(said), `signing with the revoked certificate is refused in plain words (${said})`);
  }

  // auditor: the audit log filtered by serial
  await staffLogin(page, env.AUDITOR);
  await page.fill('input[name=serial]', act.serial);
  await page.fill('input[name=event]', 'cert.');
  await page.click('form button[type=submit]');
  await page.waitForSelector('tbody tr');
  const audit = await page.textContent('tbody');
  ok(audit.includes('cert.hold') || audit.includes('cert.revoke'), 'the auditor sees the certificate\'s records with the filters');
  await check(page, 'audit');

  // phone-sized: the office page fits the width
  await staffLogin(phone, env.OFFICE);
  await check(phone, 'office-phone');
  ok(pageErrors.length === 0, `no uncaught script error on any page (${pageErrors.slice(0, 2).join(' | ')})`);
  ok(cspViolations.length === 0, `no Content-Security-Policy violation (${cspViolations.slice(0, 2).join(' | ')})`);
} catch (e) {
  ok(false, `browser run: ${e.message.split('\n')[0]}`);
  try { await page.screenshot({ path: `${env.SHOTS}/failure.png`, fullPage: true }); } catch { /* none */ }
}
await browser.close();
if (act) writeFileSync(`${env.T_DIR}/activation.json`, JSON.stringify(act));
console.log('browser done');
process.exit(failed ? 1 : 0);
