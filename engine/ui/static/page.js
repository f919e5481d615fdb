// A followed run: the server sends the page's content again whenever the document changes.
const followed = document.querySelector('[data-follow]');
if (followed && window.EventSource) {
  const events = new EventSource(followed.dataset.follow);
  events.addEventListener('steps', (e) => {
    const data = JSON.parse(e.data);
    const fresh = document.createElement('div');
    fresh.innerHTML = data.body;
    if (data.mode !== document.body.dataset.mode) {  // settings, actions: all of it changed
      document.querySelector('main').replaceChildren(...fresh.childNodes);
    } else {  // the state and the steps only: settings being edited stay as typed
      for (const live of fresh.querySelectorAll('[data-live]')) {
        const here = document.getElementById(live.id);
        if (here) here.replaceWith(live);
      }
    }
    document.body.dataset.mode = data.mode;
  });
  events.addEventListener('gone', () => { location.href = '/'; });
}

// The install base's filter: rows whose words hold every word typed.
const filter = document.getElementById('filter');
if (filter) {
  const rows = [...document.querySelectorAll('#integrations tbody tr')];
  const shown = document.getElementById('shown');
  const none = document.getElementById('no-match');
  const apply = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let count = 0;
    for (const row of rows) {
      const hit = words.every((w) => row.dataset.search.includes(w));
      row.hidden = !hit;
      count += hit ? 1 : 0;
    }
    const all = `${rows.length} integration${rows.length === 1 ? '' : 's'}`;
    shown.textContent = words.length ? `${count} of ${all}` : all;
    none.hidden = count > 0;
  };
  filter.addEventListener('input', apply);
  apply();
}
