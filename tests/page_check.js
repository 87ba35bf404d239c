// Injected into each rendered page by tests/book_pages.py: once the page (and MathJax) has settled, it writes what
// a reader would trip over into a hidden element that --dump-dom returns.
window.addEventListener('load', function () {
  // MathJax 3 typesets after load; on a busy machine that takes longer than any fixed wait
  var typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
  typeset.then(function () { return new Promise(function (ok) { setTimeout(ok, 1000); }); }).then(function () {
    var article = document.querySelector('article') || document.body;
    var right = article.getBoundingClientRect().right + 1;
    var report = {wide: [], latex: [], warnings: [], errors: (window.__pageErrors || []).slice()};
    var snippet = function (e) { return (e.textContent || e.src || '').replace(/\s+/g, ' ').trim().slice(0, 80); };
    // tables, code/output blocks and figures that run past the text column or scroll sideways
    article.querySelectorAll('table, pre, img').forEach(function (e) {
      var r = e.getBoundingClientRect();
      if (r.width === 0) return;
      var hidden = e.tagName === 'IMG' ? 0 : e.scrollWidth - e.clientWidth;
      if (r.right > right || hidden > 2) report.wide.push(e.tagName + ' ' + Math.round(r.width) + 'px: ' + snippet(e));
    });
    // display math and any other block that runs past the column or hides part of itself behind a sideways scroll
    article.querySelectorAll('mjx-container[display="true"], div.math, .cell_output > *, figure, .admonition').forEach(function (e) {
      var r = e.getBoundingClientRect();
      if (r.width === 0) return;
      var hidden = e.clientWidth > 0 ? e.scrollWidth - e.clientWidth : 0;  // (inline boxes have no client width)
      if (r.right > right || hidden > 2) report.wide.push(e.tagName + ' ' + Math.round(Math.max(r.width, e.scrollWidth)) + 'px: ' + snippet(e));
    });
    // TeX that MathJax did not typeset (outside code)
    var walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      var n = walker.currentNode;
      if (n.parentElement.closest('pre, code, script, style, mjx-container, .MathJax')) continue;
      if (/\\\(|\\\[|\$\$|\\begin\{/.test(n.textContent)) report.latex.push(n.textContent.trim().slice(0, 80));
    }
    // stderr boxes, warnings, log lines and machine paths in executed outputs
    article.querySelectorAll('.cell_output .stderr, .cell_output .output.stderr').forEach(function (e) {
      report.warnings.push('stderr: ' + snippet(e));
    });
    article.querySelectorAll('.cell_output').forEach(function (e) {
      var t = e.textContent;
      var m = t.match(/[A-Za-z]*Warning\b|warnings\.warn|Traceback|site-packages|\/(root|home|work|tmp)\/\S+|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}|<[A-Za-z_.]+ object( at 0x[0-9a-f]+)?>/);
      if (m) report.warnings.push(m[0] + ': ' + snippet(e));
    });
    var d = document.createElement('div');
    d.id = 'page-check';
    d.setAttribute('data-report', JSON.stringify(report));
    document.body.appendChild(d);
  });
});
