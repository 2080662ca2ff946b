// report.html's confusion matrix: an SVG heat map drawn from the embedded figures, re-drawn
// when the order changes; the tooltip shows a cell's count and its share of the actual class.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('graft-data').textContent);
  var C = data.classes.length;
  var NS = 'http://www.w3.org/2000/svg';
  var holder = document.getElementById('matrix-holder');
  var tip = document.getElementById('matrix-tip');
  var rowTotals = data.confusion.map(function (row) {
    return row.reduce(function (a, b) {
      return a + b;
    }, 0);
  });

  function order(kind) {
    var idx = data.classes.map(function (_, i) {
      return i;
    });
    if (kind === 'accuracy')
      return idx.sort(function (a, b) {
        return data.accuracy[a] - data.accuracy[b] || data.classes[a].localeCompare(data.classes[b]);
      });
    if (kind === 'confusion') {
      var wrong = idx.map(function (i) {
        return (
          rowTotals[i] -
          data.confusion[i][i] +
          data.confusion.reduce(function (a, row, r) {
            return a + (r === i ? 0 : row[i]);
          }, 0)
        );
      });
      return idx.sort(function (a, b) {
        return wrong[b] - wrong[a] || data.classes[a].localeCompare(data.classes[b]);
      });
    }
    return idx.sort(function (a, b) {
      return data.classes[a].localeCompare(data.classes[b]);
    });
  }

  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function colour(share, diagonal) {
    if (share === 0) return '#f4f5f8';
    var light = Math.round(96 - 58 * Math.sqrt(share));
    return diagonal ? 'hsl(140, 55%, ' + light + '%)' : 'hsl(8, 75%, ' + light + '%)';
  }

  function draw(kind) {
    var ord = order(kind);
    // At 101 classes cells stay 10 px with their names (the section scrolls): readable, not squeezed.
    var cell = Math.max(10, Math.min(30, Math.floor(760 / C)));
    var font = Math.min(11, cell - 1);
    var longest = data.classes.reduce(function (a, c) {
      return Math.max(a, c.length);
    }, 0);
    var pad = Math.min(220, 10 + 0.6 * font * longest);
    var size = C * cell;
    var svg = el('svg', {
      id: 'confusion-matrix',
      width: pad + size + 70,
      height: pad + size + 4,
      role: 'img',
      'aria-label': 'confusion matrix',
      'data-classes': C,
      style: 'font-size:' + font + 'px',
    });
    ord.forEach(function (a, i) {
      svg.appendChild(el('text', { x: pad - 4, y: pad + i * cell + cell * 0.72, 'text-anchor': 'end', class: 'row-label' }, data.classes[a]));
      svg.appendChild(
        el(
          'text',
          { x: 0, y: 0, transform: 'translate(' + (pad + i * cell + cell * 0.72) + ',' + (pad - 4) + ') rotate(-60)', class: 'col-label' },
          data.classes[a],
        ),
      );
      ord.forEach(function (p, j) {
        var n = data.confusion[a][p];
        var share = rowTotals[a] ? n / rowTotals[a] : 0;
        var r = el('rect', {
          class: 'cell',
          x: pad + j * cell,
          y: pad + i * cell,
          width: cell - 1,
          height: cell - 1,
          fill: colour(share, a === p),
          'data-actual': data.classes[a],
          'data-predicted': data.classes[p],
          'data-count': n,
        });
        r.appendChild(el('title', {}, data.classes[a] + ' \u2192 ' + data.classes[p] + ': ' + n));
        svg.appendChild(r);
      });
    });
    holder.replaceChildren(svg);
  }

  holder.addEventListener('mousemove', function (e) {
    var t = e.target;
    if (!t.classList || !t.classList.contains('cell')) {
      tip.style.display = 'none';
      return;
    }
    var a = t.getAttribute('data-actual');
    var total = rowTotals[data.classes.indexOf(a)];
    var n = Number(t.getAttribute('data-count'));
    tip.textContent =
      'actual ' +
      a +
      ', predicted ' +
      t.getAttribute('data-predicted') +
      ': ' +
      n +
      ' of ' +
      total +
      (total ? ' (' + ((100 * n) / total).toFixed(1) + '%)' : '');
    tip.style.left = e.clientX + 14 + 'px';
    tip.style.top = e.clientY + 10 + 'px';
    tip.style.display = 'block';
  });
  holder.addEventListener('mouseleave', function () {
    tip.style.display = 'none';
  });
  // A click on a cell shows its misclassified test photos (every confused pair is in the page, the
  // less confused ones hidden until asked for).
  var note = document.getElementById('cell-note');
  holder.addEventListener('click', function (e) {
    var t = e.target;
    if (!t.classList || !t.classList.contains('cell')) return;
    var a = t.getAttribute('data-actual');
    var p = t.getAttribute('data-predicted');
    var found = null;
    document.querySelectorAll('.pair').forEach(function (d) {
      d.classList.remove('selected');
      if (d.getAttribute('data-actual') === a && d.getAttribute('data-predicted') === p) found = d;
    });
    if (!found) {
      note.textContent = a === p ? a + ': the test photos it got right are not listed' : 'no misclassified photo of ' + a + ' taken for ' + p;
      return;
    }
    note.textContent = '';
    found.classList.remove('hidden');
    found.classList.add('selected');
    found.scrollIntoView({ block: 'center' });
  });
  var select = document.getElementById('matrix-order');
  select.addEventListener('change', function () {
    draw(select.value);
  });
  draw(select.value);
  document.body.setAttribute('data-rendered', 'true');
})();
