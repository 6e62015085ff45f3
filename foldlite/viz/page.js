// The script of the standalone page (foldlite.viz.page), inlined first in the page's head.
// (No HTML tags in these comments: tests find the page's tags in its text.)
//
// The page reports its state in the data-status attribute of its body (read by tests and by
// anyone scripting the page): absent while loading, then "rendered" or "errors". Every
// JavaScript error seen at any time goes into window.__foldliteErrors and the #js-errors box, and
// an error that comes after the page was marked "rendered" turns the status into "errors": an
// error is never hidden by its timing.
//
// This script runs first in the head, so it also sees errors of the 3Dmol.js library itself.
// report(text, reason) records a failure once, however many ways it surfaces (a callback
// error is caught by the tracker below and later fires 'unhandledrejection' with the same object).
window.__foldliteErrors = [];
window.__foldliteReport = (function () {
  var seen = [];
  return function (text, reason) {
    if (reason !== undefined && reason !== null) {
      if (seen.indexOf(reason) >= 0) { return; }
      seen.push(reason);
    }
    window.__foldliteErrors.push(text);
    var box = document.getElementById('js-errors');
    if (box) { box.textContent = window.__foldliteErrors.join('\n'); }
    if (document.body && document.body.getAttribute('data-status')) {
      document.body.setAttribute('data-status', 'errors');
    }
  };
})();
window.addEventListener('error', function (e) {
  window.__foldliteReport('error: ' + (e.message || (e.target && e.target.src) || e), e.error);
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__foldliteReport('unhandled rejection: ' + String(e.reason), e.reason);
});

// $3Dmolpromise for a page that loads 3Dmol.js from the CDN (the page sets it to this before
// py3Dmol's viewer code, which then uses it instead of its own loader): unlike that loader, it
// rejects when the library cannot be fetched, so an offline page says so instead of waiting
// forever.
function foldliteLoad3Dmol(url) {
  return new Promise(function (resolve, reject) {
    var tag = document.createElement('script');
    tag.src = url;
    tag.async = true;
    tag.onload = function () {
      if (typeof $3Dmol !== 'undefined') { resolve(); }
      else { reject('3Dmol.js from ' + tag.src + ' did not define $3Dmol'); }
    };
    tag.onerror = function () { reject('3Dmol.js could not be loaded from ' + tag.src); };
    document.head.appendChild(tag);
  });
}

// Decides the page status without depending on timing; the page calls it once $3Dmolpromise is
// defined, before the viewer's code. Every callback given to $3Dmolpromise.then (the viewer's
// code, added by py3Dmol further down the page, and any other) is tracked: an exception in it is
// reported the moment it is thrown (then re-thrown, so the promise chain behaves as before). The
// status is set once the window has loaded (every script of the page has run, so every callback
// has been registered), $3Dmolpromise has settled and every tracked callback has returned:
// "errors" if anything was reported by then, else "rendered". A later error still turns it into
// "errors" (see __foldliteReport). data-viewer-rect: the viewer's position.
function foldliteTrackStatus() {
  var report = window.__foldliteReport;
  var promise = $3Dmolpromise;
  var then = promise.then;
  var registered = 0, pending = 0, loaded = false, settled = false, finished = false;

  function finish() {
    finished = true;
    if (!registered) { report('3Dmol.js viewer code did not run'); }
    var r = document.getElementById('viewer-box').getBoundingClientRect();
    document.body.setAttribute('data-viewer-rect',
      [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)].join(','));
    var errs = window.__foldliteErrors;
    document.getElementById('js-errors').textContent = errs.join('\n');
    document.body.setAttribute('data-status', errs.length ? 'errors' : 'rendered');
  }
  function check() {
    if (!finished && loaded && settled && pending === 0) { finish(); }
  }
  function tracked(fn, rejected) {
    return function (value) {
      try {
        if (typeof fn === 'function') { return fn(value); }
        if (rejected) { throw value; }  // no handler: pass the rejection on (reported below)
        return value;
      } catch (e) {
        if (typeof fn === 'function') { report('error in 3D viewer code: ' + String(e), e); }
        throw e;
      } finally {
        pending -= 1;
        check();
      }
    };
  }
  promise.then = function (onFulfilled, onRejected) {
    registered += 1;
    pending += 1;
    return then.call(promise, tracked(onFulfilled, false), tracked(onRejected, true));
  };
  then.call(promise, function () { settled = true; check(); },
            function (e) { settled = true; report(String(e), e); check(); });
  window.addEventListener('load', function () { loaded = true; check(); });
  setTimeout(function () {
    if (!document.body.getAttribute('data-status')) {
      document.getElementById('load-warning').style.display = 'block';
    }
  }, 15000);
}
