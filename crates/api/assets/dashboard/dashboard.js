// forlop dashboard: service overview, pathway report, care alerts and a patient's pathway,
// over forlop's own GraphQL API with the signed-in user's bearer token (kept in memory only).
// Plain browser JavaScript, no build step; charts with the vendored uPlot. Every chart has a
// table with the same numbers beside it.
(function () {
  'use strict';

  let token = (document.querySelector('meta[name="forlop-token"]') || {}).content || null;
  let lang = 'nb';
  let socket = null; // the live alerts subscription, closed when leaving the alerts view

  const TEXT = {
    nb: {
      skip: 'Hopp til innholdet', services: 'Tjenester', signIn: 'Logg inn', signOut: 'Logg ut',
      signInHelp: 'Lim inn et bearer-token (JWT). Det holdes bare i minnet til siden lukkes.',
      token: 'Token', signedInAs: 'Innlogget som', role: 'rolle', otherLang: 'English',
      service: 'Tjeneste', careLevel: 'Omsorgsnivå', openEpisodes: 'Åpne forløp', waitMedian: 'Ventetid median (dager)',
      waitP90: 'Ventetid p90 (dager)', capacityRejections: 'Avslag pga. kapasitet', received: 'Mottatte henvisninger',
      from: 'Fra', to: 'Til', show: 'Vis', allLevels: 'Alle nivåer', report: 'Rapport', alerts: 'Varsler',
      sortBy: 'Sorter etter', period: 'Periode',
      MUNICIPAL: 'Kommunal', SPECIALIST_OUTPATIENT: 'Spesialist, poliklinikk', SPECIALIST_DAY: 'Spesialist, dag',
      SPECIALIST_INPATIENT: 'Spesialist, døgn', UNRECOGNISED: 'Ukjent kode',
      reportTitle: 'Forløpsrapport', basis: 'Grunnlag', episodes: 'Forløp', patients: 'Pasienter', gender: 'Kjønn',
      referralSources: 'Henvisningskilder', ageGroups: 'Aldersgrupper', endReasons: 'Avslutningsårsaker',
      FEMALE: 'Kvinner', MALE: 'Menn', OTHER: 'Annet', UNKNOWN: 'Ukjent',
      SELF: 'Selvhenvist', GP: 'Fastlege', HEALTH_PERSONNEL: 'Annet helsepersonell', RELATIVE: 'Pårørende', NAV: 'NAV',
      outcomes: 'Utfall: PHQ-9 og GAD-7', instrument: 'Skjema', intakeMean: 'Inntak, snitt', dischargeMean: 'Avslutning, snitt',
      pairs: 'Par', missingPairs: 'Manglende par', reliablyImproved: 'Pålitelig bedring', recovered: 'Friskmeldt',
      recovery: 'Bedring (NHS Talking Therapies)', eligible: 'Med begge par', atCaseness: 'Over terskel ved inntak',
      recoveryRate: 'Bedringsrate', reliablyDeteriorated: 'Pålitelig forverring', reliablyRecovered: 'Pålitelig bedret',
      waiting: 'Ventetid fra henvisning til oppstart', days: 'dager', count: 'Antall', waitingChart: 'Ventetid, fordeling',
      referrals: 'Henvisninger', accepted: 'Tatt inn', rejected: 'Avslått', rejectedForCapacity: 'Avslått pga. kapasitet',
      undecided: 'Ikke avgjort', continuity: 'Kontinuitet', patientsWithTransition: 'Pasienter med overgang',
      transitions: 'Overganger mellom nivåer', kept: 'Overganger med samme behandler', handovers: 'Behandlerbytter',
      handoversWithoutNotification: 'Bytter uten varsel til pasienten', meanCoc: 'COC, snitt',
      mean: 'Snitt', median: 'Median', p90: 'p90', suppressedNote: 'For analytikere er tallene beskyttet: antall er forskjøvet med inntil ±2, små tall (under 5) vises som <5, og «skjult» er et tall som holdes tilbake fordi det ellers ville avsløre et lite tall.', hiddenFigure: 'skjult',
      alertsTitle: 'Omsorgsvarsler', kind: 'Type', patient: 'Pasient', since: 'Siden', live: 'Nye varsler vises her fortløpende.',
      liveOn: 'Direkte: tilkoblet', liveOff: 'Direkte: frakoblet', noAlerts: 'Ingen åpne varsler.',
      UNASSIGNED: 'Uten behandler', INACTIVE: 'Ingen aktivitet', HANDOVER_NOT_NOTIFIED: 'Bytte uten varsel',
      pathway: 'Pasientforløp', segments: 'Omsorgsnivåer over tid', assignments: 'Behandlere', sessions: 'Timer',
      stays: 'Innleggelser', indices: 'Kontinuitetsindekser', therapist: 'Behandler', assigned: 'Tildelt', released: 'Frigitt',
      reason: 'Årsak', notified: 'Pasienten varslet', yes: 'Ja', no: 'Nei', at: 'Tidspunkt', attendance: 'Oppmøte',
      admitted: 'Innlagt', discharged: 'Utskrevet', accessLog: 'Tilgangslogg', actor: 'Hvem', outcome: 'Utfall',
      fields: 'Hva', when: 'Når', emergencyNeeded: 'Pasienten er ikke din. Akuttilgang krever en begrunnelse (minst 10 tegn); den logges.',
      emergencyReason: 'Begrunnelse for akuttilgang', open: 'Åpne', notFound: 'Fant ikke dette.',
      ATTENDED: 'Møtt', CANCELLED_BY_PATIENT: 'Avlyst av pasient', CANCELLED_BY_SERVICE: 'Avlyst av tjenesten',
      NO_SHOW: 'Ikke møtt', SICK_LEAVE: 'Sykmelding', LEFT_POSITION: 'Sluttet', POSITION_ENDED: 'Stilling opphørt',
      PATIENT_REQUEST: 'Pasientens ønske', TRANSFER: 'Overføring', EPISODE_ENDED: 'Forløp avsluttet',
      timelineAlt: 'Tidslinje; de samme opplysningene står i tabellene under.', gapDays: 'Dager uten behandler',
      UNAUTHENTICATED: 'Innloggingen er utløpt eller ugyldig. Logg inn på nytt.',
      FORBIDDEN: 'Du har ikke tilgang til dette med din rolle.',
      UNAVAILABLE: 'Tjenesten er midlertidig utilgjengelig. Prøv igjen om litt.',
      INVALID_INPUT: 'Forespørselen ble avvist som ugyldig.', NOT_FOUND: 'Fant ikke dette.',
      INTERNAL: 'Noe gikk galt på tjeneren.', NETWORK: 'Fikk ikke kontakt med tjeneren.',
      details: 'Detaljer', NONE: 'Uten henvisning', COMPLETED: 'Fullført', DROPPED_OUT: 'Avbrutt', REFERRED_ONWARD: 'Henvist videre',
      MOVED: 'Flyttet', OPEN: 'Pågår', DIED: 'Død',
    },
    en: {
      skip: 'Skip to content', services: 'Services', signIn: 'Sign in', signOut: 'Sign out',
      signInHelp: 'Paste a bearer token (JWT). It is kept in memory only, until the page closes.',
      token: 'Token', signedInAs: 'Signed in as', role: 'role', otherLang: 'Norsk',
      service: 'Service', careLevel: 'Care level', openEpisodes: 'Open episodes', waitMedian: 'Waiting median (days)',
      waitP90: 'Waiting p90 (days)', capacityRejections: 'Rejected for capacity', received: 'Referrals received',
      from: 'From', to: 'To', show: 'Show', allLevels: 'All levels', report: 'Report', alerts: 'Alerts',
      sortBy: 'Sort by', period: 'Period',
      MUNICIPAL: 'Municipal', SPECIALIST_OUTPATIENT: 'Specialist outpatient', SPECIALIST_DAY: 'Specialist day',
      SPECIALIST_INPATIENT: 'Specialist inpatient', UNRECOGNISED: 'Unknown code',
      reportTitle: 'Pathway report', basis: 'Basis', episodes: 'Episodes', patients: 'Patients', gender: 'Gender',
      referralSources: 'Referral sources', ageGroups: 'Age groups', endReasons: 'End reasons',
      FEMALE: 'Women', MALE: 'Men', OTHER: 'Other', UNKNOWN: 'Unknown',
      SELF: 'Self-referral', GP: 'GP', HEALTH_PERSONNEL: 'Other health personnel', RELATIVE: 'Relative', NAV: 'NAV',
      outcomes: 'Outcomes: PHQ-9 and GAD-7', instrument: 'Instrument', intakeMean: 'Intake mean', dischargeMean: 'Discharge mean',
      pairs: 'Pairs', missingPairs: 'Missing pairs', reliablyImproved: 'Reliably improved', recovered: 'Recovered',
      recovery: 'Recovery (NHS Talking Therapies)', eligible: 'With both pairs', atCaseness: 'At caseness at intake',
      recoveryRate: 'Recovery rate', reliablyDeteriorated: 'Reliably deteriorated', reliablyRecovered: 'Reliably recovered',
      waiting: 'Waiting from referral to start', days: 'days', count: 'Count', waitingChart: 'Waiting time, distribution',
      referrals: 'Referrals', accepted: 'Accepted', rejected: 'Rejected', rejectedForCapacity: 'Rejected for capacity',
      undecided: 'Undecided', continuity: 'Continuity', patientsWithTransition: 'Patients with a transition',
      transitions: 'Care-level transitions', kept: 'Transitions keeping the therapist', handovers: 'Handovers',
      handoversWithoutNotification: 'Handovers without notifying the patient', meanCoc: 'Mean COC',
      mean: 'Mean', median: 'Median', p90: 'p90', suppressedNote: 'For analysts the figures are protected: counts are shifted by up to ±2, small counts (below 5) show as <5, and “hidden” is a figure withheld because it would give a small one away.', hiddenFigure: 'hidden',
      alertsTitle: 'Care alerts', kind: 'Kind', patient: 'Patient', since: 'Since', live: 'New alerts appear here as they are raised.',
      liveOn: 'Live: connected', liveOff: 'Live: disconnected', noAlerts: 'No open alerts.',
      UNASSIGNED: 'Unassigned', INACTIVE: 'Inactive', HANDOVER_NOT_NOTIFIED: 'Handover not notified',
      pathway: 'Patient pathway', segments: 'Care levels over time', assignments: 'Therapists', sessions: 'Sessions',
      stays: 'Stays', indices: 'Continuity indices', therapist: 'Therapist', assigned: 'Assigned', released: 'Released',
      reason: 'Reason', notified: 'Patient told', yes: 'Yes', no: 'No', at: 'Time', attendance: 'Attendance',
      admitted: 'Admitted', discharged: 'Discharged', accessLog: 'Access log', actor: 'Who', outcome: 'Outcome',
      fields: 'What', when: 'When', emergencyNeeded: 'This patient is not yours. Emergency access needs a reason (at least 10 characters); it is logged.',
      emergencyReason: 'Reason for emergency access', open: 'Open', notFound: 'Not found.',
      ATTENDED: 'Attended', CANCELLED_BY_PATIENT: 'Cancelled by patient', CANCELLED_BY_SERVICE: 'Cancelled by service',
      NO_SHOW: 'No-show', SICK_LEAVE: 'Sick leave', LEFT_POSITION: 'Left position', POSITION_ENDED: 'Position ended',
      PATIENT_REQUEST: "Patient's request", TRANSFER: 'Transfer', EPISODE_ENDED: 'Episode ended',
      timelineAlt: 'Timeline; the tables below hold the same facts.', gapDays: 'Days without a therapist',
      UNAUTHENTICATED: 'Your sign-in has expired or is not valid. Please sign in again.',
      FORBIDDEN: 'Your role may not see this.',
      UNAVAILABLE: 'The service is temporarily unavailable. Please try again shortly.',
      INVALID_INPUT: 'The request was refused as invalid.', NOT_FOUND: 'Not found.',
      INTERNAL: 'Something went wrong on the server.', NETWORK: 'Could not reach the server.',
      details: 'Details', NONE: 'No referral', COMPLETED: 'Completed', DROPPED_OUT: 'Dropped out', REFERRED_ONWARD: 'Referred onward',
      MOVED: 'Moved', OPEN: 'Open', DIED: 'Died',
    },
  };
  const t = (key) => (TEXT[lang][key] !== undefined ? TEXT[lang][key] : key);

  // ---- formatting ---------------------------------------------------------------------------
  const locale = () => (lang === 'nb' ? 'nb-NO' : 'en-GB');
  const num = (n, digits) =>
    n === null || n === undefined ? '–' : new Intl.NumberFormat(locale(), { maximumFractionDigits: digits === undefined ? 1 : digits }).format(n);
  // A count the API withheld from this role is null with the reason: SMALL shows as <5, PROTECTED
  // (withheld only so that it cannot give a small one away) as "hidden"; never as 0.
  const count = (value, hidden) => {
    if (value !== null && value !== undefined) return num(value, 0);
    if (hidden === 'SMALL') return '<5';
    if (hidden === 'PROTECTED') return t('hiddenFigure');
    return '–';
  };
  // A figure of a summary object, with the reason the API gives for it in `hidden`.
  const fig = (o, field) => count(o[field], ((o.hidden || []).find((h) => h.field === field) || {}).reason);
  const day = (iso) => (iso ? new Date(iso).toLocaleDateString(locale(), { year: 'numeric', month: '2-digit', day: '2-digit', timeZone: 'UTC' }) : '–');
  const code = (c) => t(c);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const link = (href, text) => el('a', { href, 'data-nav': true }, text);

  function table(caption, headers, rows, testid) {
    return el('div', { class: 'table-wrap' },
      el('table', { 'data-testid': testid },
        caption ? el('caption', { class: 'muted', style: 'text-align:left' }, caption) : null,
        el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', class: h.num ? 'num' : null }, h.label !== undefined ? h.label : h)))),
        el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) => el('td', { class: headers[i] && headers[i].num ? 'num' : null }, c)))))));
  }

  // ---- the API ------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(code, message) { super(message); this.code = code; }
  }

  async function gql(query, variables) {
    let response;
    try {
      response = await fetch('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', authorization: 'Bearer ' + token },
        body: JSON.stringify({ query, variables: variables || {} }),
      });
    } catch (e) {
      throw new ApiError('NETWORK', String(e));
    }
    let body;
    try { body = await response.json(); } catch (e) { throw new ApiError('INTERNAL', 'HTTP ' + response.status); }
    if (body.errors && body.errors.length) {
      const first = body.errors[0];
      throw new ApiError((first.extensions && first.extensions.code) || 'INTERNAL', first.message);
    }
    return body.data;
  }

  function showError(container, error) {
    const c = error instanceof ApiError ? error.code : 'INTERNAL';
    container.replaceChildren(el('div', { class: 'error', role: 'alert', 'data-testid': 'error', 'data-code': c },
      el('p', {}, el('strong', {}, t(c) !== c ? t(c) : t('INTERNAL'))),
      el('p', { class: 'muted' }, t('details') + ': ' + (error.message || c)),
      c === 'UNAUTHENTICATED' ? el('button', { type: 'button', class: 'primary', onclick: () => { token = null; render(); } }, t('signIn')) : null));
  }

  // ---- who is signed in ---------------------------------------------------------------------
  function claims() {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (e) {
      return {};
    }
  }
  const roles = () => { const r = claims().role; return Array.isArray(r) ? r : r ? [r] : []; };

  function header() {
    document.documentElement.lang = lang;
    document.querySelector('.skip').textContent = t('skip');
    document.getElementById('lang').textContent = t('otherLang');
    document.getElementById('nav').replaceChildren(link('/dashboard/services' + location.search, t('services')));
    const who = document.getElementById('who');
    if (!token) { who.replaceChildren(); return; }
    const c = claims();
    who.replaceChildren(
      el('span', { 'data-testid': 'who' }, t('signedInAs') + ' ', el('strong', {}, c.name || c.sub || '?'), ' (' + t('role') + ': ' + roles().join(', ') + ') '),
      el('button', { type: 'button', class: 'link', onclick: () => { token = null; render(); } }, t('signOut')));
  }

  function signIn(main) {
    const area = el('textarea', { id: 'token', rows: 4, cols: 60, spellcheck: 'false', autocomplete: 'off' });
    main.replaceChildren(el('h1', {}, t('signIn')), el('p', {}, t('signInHelp')),
      el('form', { onsubmit: (e) => { e.preventDefault(); token = area.value.trim().replace(/^Bearer\s+/i, '') || null; render(); } },
        el('label', { for: 'token' }, t('token')), area, el('p', {}, el('button', { type: 'submit', class: 'primary' }, t('signIn')))));
    area.focus();
  }

  // ---- period ------------------------------------------------------------------------------
  function period() {
    const q = new URLSearchParams(location.search);
    const today = new Date();
    const yearAgo = new Date(Date.UTC(today.getUTCFullYear() - 1, today.getUTCMonth(), today.getUTCDate()));
    // An analyst's figures cover one calendar month, quarter or year: open on the last whole year.
    const exact = roles().some((r) => r === 'admin' || r === 'auditor');
    const lastYear = today.getUTCFullYear() - 1;
    const from = q.get('from') || (exact ? yearAgo.toISOString().slice(0, 10) : lastYear + '-01-01');
    const to = q.get('to') || (exact ? today.toISOString().slice(0, 10) : (lastYear + 1) + '-01-01');
    return { from, to, fromIso: from + 'T00:00:00Z', toIso: to + 'T00:00:00Z' };
  }

  function periodControls(p, extra) {
    const from = el('input', { type: 'date', id: 'from', value: p.from, required: true });
    const to = el('input', { type: 'date', id: 'to', value: p.to, required: true });
    return el('form', { class: 'controls', 'aria-label': t('period'), onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams(location.search);
      q.set('from', from.value); q.set('to', to.value);
      navigate(location.pathname + '?' + q.toString());
    } }, el('label', {}, t('from'), from), el('label', {}, t('to'), to), extra || null, el('button', { type: 'submit', class: 'primary' }, t('show')));
  }

  // ---- services -----------------------------------------------------------------------------
  let sortKey = 'name', sortDown = false;
  async function servicesView(main) {
    const p = period();
    const level = new URLSearchParams(location.search).get('level') || '';
    main.replaceChildren(el('h1', {}, t('services')), el('p', { class: 'muted' }, '…'));
    const data = await gql(`query($from: DateTime!, $to: DateTime!) { services { id name careLevel
      openEpisodes(asOf: $to) waitingDays(from: $from, to: $to) { count median p90 suppressed hidden { field reason } }
      referralOutcomes(from: $from, to: $to) { received rejectedForCapacity suppressed hidden { field reason } } } }`, { from: p.fromIso, to: p.toIso });
    const levelSelect = el('select', { id: 'level', onchange: (e) => {
      const q = new URLSearchParams(location.search);
      if (e.target.value) q.set('level', e.target.value); else q.delete('level');
      navigate(location.pathname + '?' + q.toString());
    } }, el('option', { value: '' }, t('allLevels')),
      ['MUNICIPAL', 'SPECIALIST_OUTPATIENT', 'SPECIALIST_DAY', 'SPECIALIST_INPATIENT'].map((l) => el('option', { value: l, selected: l === level }, t(l))));
    const value = {
      name: (s) => s.name.toLowerCase(), careLevel: (s) => s.careLevel, openEpisodes: (s) => s.openEpisodes ?? -1,
      median: (s) => s.waitingDays.median ?? -1, p90: (s) => s.waitingDays.p90 ?? -1,
      capacity: (s) => s.referralOutcomes.rejectedForCapacity ?? -1,
    };
    const rows = data.services.filter((s) => !level || s.careLevel === level)
      .sort((a, b) => { const x = value[sortKey](a), y = value[sortKey](b); return (x < y ? -1 : x > y ? 1 : 0) * (sortDown ? -1 : 1); });
    const q = '?from=' + p.from + '&to=' + p.to;
    const head = (key, label, isNum) => ({ label: el('button', { type: 'button', 'aria-label': t('sortBy') + ' ' + label,
      'aria-sort': sortKey === key ? (sortDown ? 'descending' : 'ascending') : null,
      onclick: () => { sortDown = sortKey === key ? !sortDown : false; sortKey = key; servicesView(main).catch((e) => showError(main, e)); } },
      label + (sortKey === key ? (sortDown ? ' ▼' : ' ▲') : '')), num: isNum });
    main.replaceChildren(el('h1', {}, t('services')), periodControls(p, el('label', {}, t('careLevel'), levelSelect)),
      table(null, [head('name', t('service')), head('careLevel', t('careLevel')), head('openEpisodes', t('openEpisodes'), true),
        head('median', t('waitMedian'), true), head('p90', t('waitP90'), true), head('capacity', t('capacityRejections'), true), ''],
      rows.map((s) => [s.name, code(s.careLevel), count(s.openEpisodes, s.openEpisodes === null ? 'SMALL' : null),
        num(s.waitingDays.median), num(s.waitingDays.p90),
        fig(s.referralOutcomes, 'rejectedForCapacity'),
        el('span', {}, link('/dashboard/services/' + s.id + '/report' + q, t('report')), ' · ', link('/dashboard/services/' + s.id + '/alerts', t('alerts')))]),
      'services'),
      el('p', { class: 'muted' }, t('suppressedNote')));
  }

  // ---- pathway report -----------------------------------------------------------------------
  async function serviceName(id) {
    const data = await gql('{ services { id name careLevel } }');
    return data.services.find((s) => s.id === id) || { name: id, careLevel: 'UNRECOGNISED' };
  }

  function countsTable(title, counts, testid) {
    return el('section', {}, el('h2', {}, title),
      table(null, ['', { label: t('count'), num: true }], counts.map((c) => [code(c.key), count(c.count, c.hidden)]), testid));
  }

  // Waiting days in bins of weeks, as a uPlot bar chart with the same numbers in a table.
  function waitingChart(bins) {
    const labels = bins.map((b) => b.key);
    const values = bins.map((b) => b.count);
    const box = el('div', { class: 'chart', role: 'img', 'aria-label': t('waitingChart') });
    const width = Math.min(640, (document.getElementById('main').clientWidth || 640) - 20);
    if (window.uPlot && values.some((v) => v !== null)) {
      const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
      // eslint-disable-next-line no-new
      new uPlot({
        width, height: 220, legend: { show: false }, cursor: { show: false },
        scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
        axes: [{ values: (u, ticks) => ticks.map((i) => labels[i] || '') , splits: () => labels.map((_, i) => i) },
          { values: (u, ticks) => ticks.map((v) => num(v, 0)) }],
        series: [{}, { label: t('count'), fill: 'rgba(11,92,173,0.55)', stroke: '#0b5cad', paths: bars, points: { show: false } }],
      }, [labels.map((_, i) => i), values], box); // a withheld bin stays null: no bar, never a 0
    }
    return el('div', {}, box, table(null, [t('days'), { label: t('count'), num: true }], bins.map((b) => [b.key, count(b.count, b.hidden)]), 'waiting-histogram'));
  }

  async function reportView(main, serviceId) {
    const p = period();
    main.replaceChildren(el('h1', {}, t('reportTitle')), el('p', { class: 'muted' }, '…'));
    const [service, data] = await Promise.all([serviceName(serviceId), gql(`query($s: UUID!, $from: DateTime!, $to: DateTime!) {
      pathwayReport(serviceId: $s, from: $from, to: $to) { episodes patients suppressed hidden { field reason }
        gender { key count hidden } referralSources { key count hidden } ageGroups { key count hidden }
        endReasons { key count hidden }
        phq9 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered hidden { field reason } }
        gad7 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered hidden { field reason } }
        recovery { eligible atCaseness recovered reliablyImproved reliablyDeteriorated reliablyRecovered recoveryRate hidden { field reason } }
        waitingDays { count mean median p90 hidden { field reason } } waitingHistogram { key count hidden }
        referrals { received accepted rejected rejectedForCapacity undecided hidden { field reason } }
        continuity { patientsWithTransition transitions transitionsKeepingTherapist handovers handoversWithoutNotification meanCoc hidden { field reason } } } }`,
    { s: serviceId, from: p.fromIso, to: p.toIso })]);
    const r = data.pathwayReport;
    const outcomeRow = (name, o) => [name, num(o.intakeMean), num(o.dischargeMean), fig(o, 'pairedCount'), fig(o, 'missingPairs'),
      fig(o, 'reliablyImproved'), fig(o, 'recovered')];
    main.replaceChildren(
      el('h1', {}, t('reportTitle') + ': ' + service.name),
      el('p', { class: 'muted' }, code(service.careLevel) + ' · ' + day(p.fromIso) + ' – ' + day(p.toIso) + ' · ', link('/dashboard/services/' + serviceId + '/alerts', t('alerts'))),
      periodControls(p),
      el('section', {}, el('h2', {}, t('basis')),
        el('div', { class: 'grid' },
          el('p', {}, t('episodes'), el('br'), el('span', { class: 'figure', 'data-testid': 'episodes' }, fig(r, 'episodes'))),
          el('p', {}, t('patients'), el('br'), el('span', { class: 'figure', 'data-testid': 'patients' }, fig(r, 'patients'))))),
      el('div', { class: 'grid' }, countsTable(t('gender'), r.gender, 'gender'), countsTable(t('referralSources'), r.referralSources, 'referral-sources'),
        countsTable(t('ageGroups'), r.ageGroups, 'age-groups'), countsTable(t('endReasons'), r.endReasons, 'end-reasons')),
      el('section', {}, el('h2', {}, t('outcomes')),
        table(null, [t('instrument'), { label: t('intakeMean'), num: true }, { label: t('dischargeMean'), num: true }, { label: t('pairs'), num: true },
          { label: t('missingPairs'), num: true }, { label: t('reliablyImproved'), num: true }, { label: t('recovered'), num: true }],
        [outcomeRow('PHQ-9', r.phq9), outcomeRow('GAD-7', r.gad7)], 'outcomes')),
      el('section', {}, el('h2', {}, t('recovery')),
        table(null, ['', { label: t('count'), num: true }], [
          [t('eligible'), fig(r.recovery, 'eligible')], [t('atCaseness'), fig(r.recovery, 'atCaseness')],
          [t('recovered'), fig(r.recovery, 'recovered')], [t('reliablyImproved'), fig(r.recovery, 'reliablyImproved')],
          [t('reliablyDeteriorated'), fig(r.recovery, 'reliablyDeteriorated')],
          [t('reliablyRecovered'), fig(r.recovery, 'reliablyRecovered')],
          [t('recoveryRate'), r.recovery.recoveryRate === null ? '–' : num(r.recovery.recoveryRate * 100) + ' %']], 'recovery')),
      el('section', {}, el('h2', {}, t('waiting')),
        el('p', {}, t('median') + ' ' + num(r.waitingDays.median) + ' ' + t('days') + ', p90 ' + num(r.waitingDays.p90) + ' ' + t('days') + ', '
          + t('mean').toLowerCase() + ' ' + num(r.waitingDays.mean) + ' ' + t('days') + ' (' + t('episodes').toLowerCase() + ': ' + fig(r.waitingDays, 'count') + ')'),
        waitingChart(r.waitingHistogram)),
      el('section', {}, el('h2', {}, t('referrals')),
        table(null, ['', { label: t('count'), num: true }], [[t('received'), fig(r.referrals, 'received')],
          [t('accepted'), fig(r.referrals, 'accepted')], [t('rejected'), fig(r.referrals, 'rejected')],
          [t('rejectedForCapacity'), fig(r.referrals, 'rejectedForCapacity')], [t('undecided'), fig(r.referrals, 'undecided')]], 'referrals')),
      el('section', {}, el('h2', {}, t('continuity')),
        table(null, ['', { label: t('count'), num: true }], [[t('patientsWithTransition'), fig(r.continuity, 'patientsWithTransition')],
          [t('transitions'), fig(r.continuity, 'transitions')], [t('kept'), fig(r.continuity, 'transitionsKeepingTherapist')],
          [t('handovers'), fig(r.continuity, 'handovers')],
          [t('handoversWithoutNotification'), fig(r.continuity, 'handoversWithoutNotification')],
          [t('meanCoc'), num(r.continuity.meanCoc, 2)]], 'continuity')),
      el('p', { class: 'muted' }, t('suppressedNote')));
  }

  // ---- care alerts (live) -------------------------------------------------------------------
  function alertRow(a, fresh) {
    const row = el('tr', { class: fresh ? 'new' : null, 'data-kind': a.kind },
      el('td', {}, code(a.kind)), el('td', {}, link('/dashboard/patients/' + a.patientId, a.patientId.slice(0, 8))),
      el('td', {}, day(a.since)), el('td', { class: 'num' }, num(a.days, 0)));
    return row;
  }

  async function alertsView(main, serviceId) {
    main.replaceChildren(el('h1', {}, t('alertsTitle')), el('p', { class: 'muted' }, '…'));
    const [service, data] = await Promise.all([serviceName(serviceId), gql(`query($s: UUID!, $at: DateTime!) {
      careAlerts(asOf: $at, serviceId: $s) { kind patientId episodeId serviceId since days } }`, { s: serviceId, at: new Date().toISOString() })]);
    const body = el('tbody', { 'data-testid': 'alerts' }, data.careAlerts.map((a) => alertRow(a, false)));
    const status = el('p', { class: 'muted', 'data-testid': 'live-status', role: 'status' }, t('liveOff'));
    const announce = el('div', { 'aria-live': 'polite', class: 'skip' });
    main.replaceChildren(el('h1', {}, t('alertsTitle') + ': ' + service.name),
      el('p', {}, t('live'), ' ', link('/dashboard/services/' + serviceId + '/report', t('report'))), status, announce,
      el('div', { class: 'table-wrap' }, el('table', {}, el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, t('kind')), el('th', { scope: 'col' }, t('patient')),
        el('th', { scope: 'col' }, t('since')), el('th', { scope: 'col', class: 'num' }, t('days')))), body)),
      data.careAlerts.length ? null : el('p', { class: 'muted', 'data-testid': 'no-alerts' }, t('noAlerts')));
    // graphql-transport-ws: the token goes in connection_init, as the API asks of every client.
    socket = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql/ws', 'graphql-transport-ws');
    socket.onopen = () => socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: 'Bearer ' + token } }));
    socket.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === 'connection_ack') {
        status.textContent = t('liveOn');
        status.dataset.connected = 'true';
        socket.send(JSON.stringify({ id: 'alerts', type: 'subscribe', payload: {
          query: 'subscription($s: UUID) { careAlertRaised(serviceId: $s) { kind patientId episodeId serviceId since days } }', variables: { s: serviceId } } }));
      } else if (msg.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      } else if (msg.type === 'next' && msg.payload && msg.payload.data) {
        const a = msg.payload.data.careAlertRaised;
        body.prepend(alertRow(a, true));
        announce.textContent = code(a.kind) + ': ' + a.patientId;
        const none = main.querySelector('[data-testid="no-alerts"]');
        if (none) none.remove();
      } else if (msg.type === 'next' && msg.payload && msg.payload.errors) {
        const e = msg.payload.errors[0];
        showError(status, new ApiError((e.extensions && e.extensions.code) || 'INTERNAL', e.message));
      }
    };
    socket.onclose = () => { status.textContent = t('liveOff'); status.dataset.connected = 'false'; };
  }

  // ---- a patient's pathway ------------------------------------------------------------------
  const LEVEL_COLOUR = { MUNICIPAL: 'var(--municipal)', SPECIALIST_OUTPATIENT: 'var(--outpatient)', SPECIALIST_DAY: 'var(--day)', SPECIALIST_INPATIENT: 'var(--inpatient)' };
  const ATTENDANCE_COLOUR = { ATTENDED: '#1b1f24', NO_SHOW: '#b3261e', CANCELLED_BY_PATIENT: '#c77700', CANCELLED_BY_SERVICE: '#7b4ab0' };

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, v);
    for (const c of children.flat()) if (c) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // The timeline: care-level segments on top, one row per therapist with their assignments as
  // bars and their sessions as marks, stays shaded behind everything, handovers as dashed lines.
  function timeline(pathway, therapistName) {
    const times = [];
    pathway.segments.forEach((s) => times.push(s.from, s.to));
    pathway.assignments.forEach((a) => times.push(a.from, a.to || a.from));
    pathway.sessions.forEach((s) => times.push(s.at));
    pathway.stays.forEach((s) => times.push(s.admittedAt, s.dischargedAt || s.admittedAt));
    const ms = times.filter(Boolean).map((x) => Date.parse(x));
    if (!ms.length) return null;
    const start = Math.min(...ms), end = Math.max(...ms) + 86400000;
    const therapists = [...new Set(pathway.assignments.map((a) => a.therapistId).concat(pathway.sessions.map((s) => s.therapistId)))];
    const W = 960, left = 150, right = 20, rowH = 26, top = 30;
    const H = top + rowH * (1 + therapists.length) + 30;
    const x = (iso) => left + ((Date.parse(iso) - start) / (end - start)) * (W - left - right);
    const now = new Date().toISOString();
    const nodes = [];
    pathway.stays.forEach((s) => nodes.push(svg('rect', { x: x(s.admittedAt), y: top - 6, width: Math.max(2, x(s.dischargedAt || now) - x(s.admittedAt)), height: H - top - 18, fill: 'rgba(179,38,30,0.10)' },
      svg('title', {}, t('stays') + ': ' + day(s.admittedAt) + ' – ' + day(s.dischargedAt)))));
    nodes.push(svg('text', { x: 4, y: top + 17, 'font-size': 13 }, t('careLevel')));
    pathway.segments.forEach((s) => nodes.push(svg('rect', { x: x(s.from), y: top, width: Math.max(2, x(s.to) - x(s.from)), height: rowH - 6, fill: LEVEL_COLOUR[s.careLevel] || '#888', 'data-segment': s.careLevel },
      svg('title', {}, code(s.careLevel) + ': ' + day(s.from) + ' – ' + day(s.to)))));
    therapists.forEach((id, i) => {
      const y = top + rowH * (i + 1);
      nodes.push(svg('text', { x: 4, y: y + 17, 'font-size': 13 }, therapistName(id).slice(0, 18)));
      pathway.assignments.filter((a) => a.therapistId === id).forEach((a) => nodes.push(svg('rect', { x: x(a.from), y: y + 4, width: Math.max(2, x(a.to || now) - x(a.from)), height: rowH - 12, fill: 'rgba(11,92,173,0.35)' },
        svg('title', {}, therapistName(id) + ': ' + day(a.from) + ' – ' + day(a.to)))));
      pathway.sessions.filter((s) => s.therapistId === id).forEach((s) => nodes.push(svg('circle', { cx: x(s.at), cy: y + rowH / 2 - 1, r: 4, fill: ATTENDANCE_COLOUR[s.attendance] || '#888' },
        svg('title', {}, day(s.at) + ': ' + code(s.attendance)))));
    });
    pathway.handovers.forEach((h) => nodes.push(svg('line', { x1: x(h.releasedAt), x2: x(h.releasedAt), y1: top - 10, y2: H - 20, stroke: h.patientNotified ? '#5b636e' : '#b3261e', 'stroke-dasharray': '4 3', 'stroke-width': 2 },
      svg('title', {}, t('handovers') + ': ' + code(h.reason) + ', ' + t('notified').toLowerCase() + ': ' + (h.patientNotified ? t('yes') : t('no'))))));
    nodes.push(svg('text', { x: left, y: H - 4, 'font-size': 12, fill: '#5b636e' }, day(new Date(start).toISOString())));
    nodes.push(svg('text', { x: W - right, y: H - 4, 'font-size': 12, fill: '#5b636e', 'text-anchor': 'end' }, day(new Date(end).toISOString())));
    return svg('svg', { class: 'timeline', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': t('timelineAlt'), 'data-testid': 'timeline' }, nodes);
  }

  // Assignments, releases and sessions come from the patient's own stream (`history`).
  function pathwayOf(patient) {
    const assignments = [], sessions = [];
    for (const e of patient.history) {
      const p = e.payload;
      if (e.type === 'TherapistAssigned') assignments.push({ episodeId: p.episode_id, therapistId: p.therapist_id, from: p.assigned_at, to: null });
      if (e.type === 'TherapistReleased') {
        const open = assignments.find((a) => a.episodeId === p.episode_id && a.therapistId === p.therapist_id && !a.to);
        if (open) open.to = p.released_at;
      }
      if (e.type === 'SessionRecorded') sessions.push({ therapistId: p.therapist_id, attendance: p.attendance, at: p.at });
    }
    for (const ep of patient.episodes) for (const a of assignments) if (a.episodeId === ep.id && !a.to && ep.endedAt) a.to = ep.endedAt;
    sessions.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    return { segments: patient.continuity.segments, handovers: patient.continuity.handovers, stays: patient.admissions, assignments, sessions };
  }

  async function patientView(main, id, reason) {
    main.replaceChildren(el('h1', {}, t('pathway')), el('p', { class: 'muted' }, '…'));
    const auditor = roles().some((r) => r === 'auditor' || r === 'admin');
    let data;
    try {
      data = await gql(`query($id: UUID!, $reason: String) { patient(id: $id, emergencyReason: $reason) { id birthYear gender forgotten
        continuity { attendedSessions distinctTherapists careLevelTransitions transitionsKeepingTherapist coc upc secon mmci
          segments { careLevel from to therapistIds sessions }
          handovers { episodeId fromTherapistId toTherapistId reason patientNotified releasedAt gapDays } }
        episodes { id serviceId careLevel startedAt endedAt } admissions { id serviceId admittedAt dischargedAt }
        history { type payload } } }`, { id, reason: reason || null });
    } catch (e) {
      if (e.code === 'FORBIDDEN' && roles().includes('clinician') && !reason) {
        const input = el('input', { id: 'reason', minlength: 10, required: true, size: 50 });
        main.replaceChildren(el('h1', {}, t('pathway')), el('div', { class: 'error', role: 'alert', 'data-testid': 'error', 'data-code': e.code }, t('emergencyNeeded')),
          el('form', { class: 'controls', onsubmit: (ev) => { ev.preventDefault(); patientView(main, id, input.value).catch((x) => showError(main, x)); } },
            el('label', {}, t('emergencyReason'), input), el('button', { type: 'submit', class: 'primary' }, t('open'))));
        return;
      }
      throw e;
    }
    if (!data.patient) { main.replaceChildren(el('h1', {}, t('pathway')), el('p', { 'data-testid': 'error' }, t('notFound'))); return; }
    const names = {};
    try { (await gql('{ therapists { id name } }')).therapists.forEach((x) => { names[x.id] = x.name; }); } catch (e) { /* names are a courtesy */ }
    const therapistName = (tid) => (tid ? names[tid] || tid.slice(0, 8) : '–');
    const pt = data.patient, c = pt.continuity, path = pathwayOf(pt);
    const sections = [
      el('h1', {}, t('pathway') + ' ' + pt.id.slice(0, 8)),
      el('p', { class: 'muted' }, code(pt.gender) + ', ' + pt.birthYear),
      el('section', {}, el('h2', {}, t('indices')),
        table(null, ['', { label: '', num: true }], [['COC', num(c.coc, 2)], ['UPC', num(c.upc, 2)], ['SECON', num(c.secon, 2)], ['MMCI', num(c.mmci, 2)],
          [t('transitions'), num(c.careLevelTransitions, 0)], [t('kept'), num(c.transitionsKeepingTherapist, 0)], [t('sessions'), num(c.attendedSessions, 0)]], 'indices')),
      el('section', {}, el('h2', {}, t('segments')),
        el('div', { class: 'legend' }, Object.keys(LEVEL_COLOUR).map((l) => el('span', {}, el('span', { class: 'swatch', style: 'background:' + LEVEL_COLOUR[l] }), code(l))),
          Object.keys(ATTENDANCE_COLOUR).map((a) => el('span', {}, el('span', { class: 'swatch', style: 'border-radius:50%;background:' + ATTENDANCE_COLOUR[a] }), code(a)))),
        timeline(path, therapistName),
        table(t('segments'), [t('careLevel'), t('from'), t('to'), t('assignments'), { label: t('sessions'), num: true }],
          c.segments.map((s) => [code(s.careLevel), day(s.from), day(s.to), s.therapistIds.map(therapistName).join(', '), num(s.sessions, 0)]), 'segments')),
      el('section', {}, el('h2', {}, t('handovers')),
        table(null, [t('released'), t('therapist'), '→', t('reason'), t('notified'), { label: t('gapDays'), num: true }],
          c.handovers.map((h) => [day(h.releasedAt), therapistName(h.fromTherapistId), therapistName(h.toTherapistId), code(h.reason), h.patientNotified ? t('yes') : t('no'), num(h.gapDays)]), 'handovers')),
      el('details', {}, el('summary', {}, t('assignments') + ', ' + t('sessions').toLowerCase() + ', ' + t('stays').toLowerCase()),
        table(t('assignments'), [t('therapist'), t('assigned'), t('released')], path.assignments.map((a) => [therapistName(a.therapistId), day(a.from), day(a.to)]), 'assignments'),
        table(t('sessions'), [t('at'), t('therapist'), t('attendance')], path.sessions.map((s) => [day(s.at), therapistName(s.therapistId), code(s.attendance)]), 'sessions'),
        table(t('stays'), [t('admitted'), t('discharged')], path.stays.map((s) => [day(s.admittedAt), day(s.dischargedAt)]), 'stays')),
    ];
    if (auditor) {
      try {
        const log = await gql('query($p: UUID!) { accessLog(patientId: $p, first: 200) { nodes { at actor actorName role outcome operation fields reason } } }', { p: id });
        sections.push(el('section', {}, el('h2', {}, t('accessLog')), table(null, [t('when'), t('actor'), t('role'), t('outcome'), t('fields'), t('reason')],
          log.accessLog.nodes.map((n) => [new Date(n.at).toLocaleString(locale()), n.actorName || n.actor, n.role, n.outcome, n.operation + ' / ' + n.fields, n.reason || '']), 'access-log')));
      } catch (e) {
        const box = el('div', {});
        showError(box, e);
        sections.push(box);
      }
    }
    main.replaceChildren(...sections);
  }

  // ---- routing ------------------------------------------------------------------------------
  function navigate(href) {
    history.pushState(null, '', href);
    render();
  }

  async function render() {
    // `data-rendered` names the path of the last complete view; cleared while a view is being
    // built, so a second render of the same path (a language switch) is observable too.
    delete document.body.dataset.rendered;
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    header();
    const main = document.getElementById('main');
    if (!token) { signIn(main); return; }
    const parts = location.pathname.replace(/\/+$/, '').split('/').slice(2); // after /dashboard
    try {
      if (parts[0] === 'services' && parts[1] && parts[2] === 'report') await reportView(main, parts[1]);
      else if (parts[0] === 'services' && parts[1] && parts[2] === 'alerts') await alertsView(main, parts[1]);
      else if (parts[0] === 'patients' && parts[1]) await patientView(main, parts[1]);
      else await servicesView(main);
    } catch (e) {
      showError(main, e);
    }
    document.body.dataset.rendered = location.pathname;
    // Time from navigation start to the first complete view, for whoever measures the page.
    if (!document.body.dataset.firstRenderMs) document.body.dataset.firstRenderMs = String(Math.round(performance.now()));
  }

  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[data-nav]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(a.getAttribute('href'));
    document.getElementById('main').focus();
  });
  window.addEventListener('popstate', render);
  document.getElementById('lang').addEventListener('click', () => { lang = lang === 'nb' ? 'en' : 'nb'; render(); });
  render();
}());
