// Live updates for the Strata dashboard: re-fetch the server-rendered fragment every few
// seconds and swap it in. Pauses while the tab is hidden. Pages work without this file.
(function () {
  'use strict';
  var live = document.getElementById('live');
  var status = document.getElementById('live-status');
  if (!live) { return; }
  var src = live.getAttribute('data-src');
  var period = parseInt(live.getAttribute('data-refresh-ms'), 10) || 5000;
  var timer = null;
  var busy = false;
  var updates = 0;
  function say(text) { if (status) { status.textContent = text; } }
  function refresh() {
    if (document.hidden || busy) { return; }
    busy = true;
    fetch(src, { headers: { 'Accept': 'text/html' }, cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        // Keep the tab title in step, so a background tab still says CRIT.
        var titled = live.querySelector('[data-title]');
        if (titled) { document.title = titled.getAttribute('data-title') + ' · Strata dashboard'; }
        updates += 1;
        document.body.setAttribute('data-live-updates', String(updates));
        say('live: updates every ' + period / 1000 + ' s');
      })
      .catch(function (e) {
        say('live update failed (' + e.message + '): data as of the time shown; retrying');
      })
      .then(function () { busy = false; });
  }
  function start() { if (!timer) { timer = setInterval(refresh, period); } }
  function stop() { if (timer) { clearInterval(timer); timer = null; } }
  document.addEventListener('visibilitychange', function () {
    if (document.hidden) { stop(); say('paused while this tab is hidden'); }
    else { refresh(); start(); }
  });
  say('live: updates every ' + period / 1000 + ' s');
  start();
}());
