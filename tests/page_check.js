// Injected into each rendered page by tests/book_pages.py: once the page (and MathJax) has settled, it writes what
// a reader would trip over into a hidden element that --dump-dom returns.
window.addEventListener('load', function () {
  setTimeout(function () {
    var article = document.querySelector('article') || document.body;
    var right = article.getBoundingClientRect().right + 1;
    var report = {wide: [], latex: [], warnings: []};
    var snippet = function (e) { return (e.textContent || e.src || '').replace(/\s+/g, ' ').trim().slice(0, 80); };
    // tables, code/output blocks and figures that run past the text column or scroll sideways
    article.querySelectorAll('table, pre, img').forEach(function (e) {
      var r = e.getBoundingClientRect();
      if (r.width === 0) return;
      var hidden = e.tagName === 'IMG' ? 0 : e.scrollWidth - e.clientWidth;
      if (r.right > right || hidden > 2) report.wide.push(e.tagName + ' ' + Math.round(r.width) + 'px: ' + snippet(e));
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
      var m = t.match(/[A-Za-z]*Warning\b|warnings\.warn|Traceback|site-packages|\/(root|home|work|tmp)\/\S+|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}/);
      if (m) report.warnings.push(m[0] + ': ' + snippet(e));
    });
    var d = document.createElement('div');
    d.id = 'page-check';
    d.setAttribute('data-report', JSON.stringify(report));
    document.body.appendChild(d);
  }, 2000);
});
