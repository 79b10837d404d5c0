// gate_explorer.js: the gate explorer's page. THEORY.md's equations a third time (after 01's hand-written
// PyTorch cells and torch.nn): LSTM (L1)-(L6), GRU (G1)-(G4), one step at a time in plain loops, from the
// weights gate_explorer.py put in the page. Then each model's own output (the next-character distribution,
// the running sentiment probability, the B/M/E/S tags by Viterbi) and the views. tests/test_06_gate_explorer.py
// checks every number against torch.nn in a real browser.
"use strict";
(function () {
  const MODEL = JSON.parse(document.getElementById("model").textContent);
  const PAGES = JSON.parse(document.getElementById("pages").textContent);
  const W = decodeWeights(document.getElementById("weights").textContent.trim());
  const STOI = new Map(MODEL.vocab.map((t, i) => [t, i]));
  const BIGRAMS = MODEL.bigrams ? new Map(MODEL.bigrams.map((t, i) => [t, i])) : null;
  const H = MODEL.hidden;
  const QUANTITIES = MODEL.cell === "lstm"
    ? [["i", "输入门 i · input gate (L1)"], ["f", "遗忘门 f · forget gate (L2)"], ["o", "输出门 o · output gate (L4)"],
       ["g", "候选值 g · candidate (L3)"], ["c", "细胞状态 c · cell state (L5)"], ["h", "隐藏状态 h · hidden state (L6)"]]
    : [["z", "更新门 z · update gate (G2)"], ["r", "重置门 r · reset gate (G1)"], ["n", "候选值 n · candidate (G3)"],
       ["h", "隐藏状态 h · hidden state (G4)"]];
  const GATES = new Set(["i", "f", "o", "z", "r"]);
  const TAGS = "BMES";

  // ------------------------------------------------------------------------------------------------
  // The weights: one base64 block of little-endian float32; each array is {offset, shape} into it
  // ------------------------------------------------------------------------------------------------
  function decodeWeights(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
    return new Float32Array(bytes.buffer);
  }
  function arr(ref) {
    return W.subarray(ref.offset, ref.offset + ref.shape.reduce((a, b) => a * b, 1));
  }
  const sigmoid = (x) => 1 / (1 + Math.exp(-x));

  // ------------------------------------------------------------------------------------------------
  // Reading: text -> tokens -> ids, as each case's Python encodes (gate_explorer.encode)
  // ------------------------------------------------------------------------------------------------
  const halfWidth = (s) => s.replace(/[\uff01-\uff5e]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0))
    .replace(/\u3000/g, " ");
  const HAN = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff";
  const OTHER = "\u0370-\u03ff\u0400-\u052f\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\uac00-\ud7a3";
  const TOKEN_RE = new RegExp(`[${HAN}]|[a-z0-9]+(?:'[a-z]+)?|[!?]|[${OTHER}]+`, "g");   // utils.data_utils.tokenize

  function read(text) {
    let chars = Array.from(text);                         // code points, as Python's str
    const cut = Math.max(0, chars.length - MODEL.max_chars);
    chars = chars.slice(0, MODEL.max_chars);
    text = chars.join("");
    let tokens;
    if (MODEL.reader === "words") {
      tokens = text.toLowerCase().replace(/<br\s*\/?>/gi, " ").replace(/\uff01/g, "!").replace(/\uff1f/g, "?")
        .match(TOKEN_RE) || [];
    } else if (MODEL.reader === "review_chars") {
      tokens = Array.from(halfWidth(text.trim()));
    } else if (MODEL.reader === "half_width") {
      tokens = Array.from(halfWidth(text));
    } else {
      tokens = chars;
    }
    const modelCut = MODEL.max_len ? Math.max(0, tokens.length - MODEL.max_len) : 0;
    if (modelCut) tokens = tokens.slice(0, MODEL.max_len);
    const ids = tokens.map((t) => (STOI.has(t) ? STOI.get(t) : MODEL.unk));
    const unknown = [...new Set(tokens.filter((t, k) => ids[k] === MODEL.unk))];
    return { tokens, ids, unknown, cut, modelCut };
  }

  // The recurrent layer's inputs (T, I): embedding rows (05's segmenter: + its left and right bigrams)
  function inputs(tokens, ids) {
    const E = arr(MODEL.embedding), e = MODEL.embedding.shape[1], T = ids.length;
    let B = null, b = 0, left = [], right = [];
    if (MODEL.bigram_embedding) {
      B = arr(MODEL.bigram_embedding);
      b = MODEL.bigram_embedding.shape[1];
      const padded = [MODEL.edges[0], ...tokens, MODEL.edges[1]];
      const id = (pair) => (BIGRAMS.has(pair) ? BIGRAMS.get(pair) : 1);
      for (let t = 0; t < T; t++) {
        left.push(id(padded[t] + padded[t + 1]));
        right.push(id(padded[t + 1] + padded[t + 2]));
      }
    }
    const I = e + 2 * b, X = new Float64Array(T * I);
    for (let t = 0; t < T; t++) {
      for (let k = 0; k < e; k++) X[t * I + k] = E[ids[t] * e + k];
      for (let k = 0; k < b; k++) {
        X[t * I + e + k] = B[left[t] * b + k];
        X[t * I + e + b + k] = B[right[t] * b + k];
      }
    }
    return { X, I };
  }

  // ------------------------------------------------------------------------------------------------
  // The cells, one step at a time. X: (T, I) row-major; a reverse direction reads t = T-1 .. 0 and stores
  // its state after step t at row t. Gate order as torch.nn: LSTM i, f, g, o; GRU r, z, n.
  // ------------------------------------------------------------------------------------------------
  function affine(Wm, b, v, vOff, n, rows, out, outOff) {  // out[outOff + j] = b[j] + Wm[j, :] . v[vOff ...]
    for (let j = 0; j < rows; j++) {
      let a = b ? b[j] : 0;
      const r = j * n;
      for (let k = 0; k < n; k++) a += Wm[r + k] * v[vOff + k];
      out[outOff + j] = a;
    }
  }

  function lstmLayer(X, T, I, w, reverse) {
    const Wi = arr(w.weight_ih), Wh = arr(w.weight_hh), bi = arr(w.bias_ih), bh = arr(w.bias_hh);
    const tr = {}, ax = new Float64Array(4 * H), ah = new Float64Array(4 * H);
    for (const q of "ifgoch") tr[q] = new Float64Array(T * H);
    let h = new Float64Array(H), c = new Float64Array(H);
    for (let s = 0; s < T; s++) {
      const t = reverse ? T - 1 - s : s, o = t * H;
      affine(Wi, bi, X, t * I, I, 4 * H, ax, 0);        // W_ih x_t + b_ih
      affine(Wh, bh, h, 0, H, 4 * H, ah, 0);            // W_hh h_{t-1} + b_hh
      const hNew = new Float64Array(H);
      for (let k = 0; k < H; k++) {
        const i = sigmoid(ax[k] + ah[k]);                              // (L1) 输入门 input gate
        const f = sigmoid(ax[H + k] + ah[H + k]);                      // (L2) 遗忘门 forget gate
        const g = Math.tanh(ax[2 * H + k] + ah[2 * H + k]);            // (L3) 候选值 candidate
        const og = sigmoid(ax[3 * H + k] + ah[3 * H + k]);             // (L4) 输出门 output gate
        c[k] = f * c[k] + i * g;                                       // (L5) 细胞状态 cell state
        hNew[k] = og * Math.tanh(c[k]);                                // (L6) 隐藏状态 hidden state
        tr.i[o + k] = i; tr.f[o + k] = f; tr.g[o + k] = g; tr.o[o + k] = og; tr.c[o + k] = c[k]; tr.h[o + k] = hNew[k];
      }
      h = hNew;
    }
    return tr;
  }

  function gruLayer(X, T, I, w, reverse) {
    const Wi = arr(w.weight_ih), Wh = arr(w.weight_hh), bi = arr(w.bias_ih), bh = arr(w.bias_hh);
    const tr = {}, ax = new Float64Array(3 * H), ah = new Float64Array(3 * H);
    for (const q of "rznh") tr[q] = new Float64Array(T * H);
    let h = new Float64Array(H);
    for (let s = 0; s < T; s++) {
      const t = reverse ? T - 1 - s : s, o = t * H;
      affine(Wi, bi, X, t * I, I, 3 * H, ax, 0);        // W_ih x_t + b_ih
      affine(Wh, bh, h, 0, H, 3 * H, ah, 0);            // W_hh h_{t-1} + b_hh (b_hn stays inside r * (...))
      const hNew = new Float64Array(H);
      for (let k = 0; k < H; k++) {
        const r = sigmoid(ax[k] + ah[k]);                              // (G1) 重置门 reset gate
        const z = sigmoid(ax[H + k] + ah[H + k]);                      // (G2) 更新门 update gate
        const n = Math.tanh(ax[2 * H + k] + r * ah[2 * H + k]);        // (G3) 候选值 candidate
        hNew[k] = (1 - z) * n + z * h[k];                              // (G4) 新的隐藏状态 new hidden state
        tr.r[o + k] = r; tr.z[o + k] = z; tr.n[o + k] = n; tr.h[o + k] = hNew[k];
      }
      h = hNew;
    }
    return tr;
  }

  // The stack: layer l reads layer l-1's hidden states, both directions side by side -> top (T, D).
  // full: a run over a longer text that starts with these T steps; the first layer's left-to-right states
  // only depend on what came before, so they are taken from it rather than computed again.
  function runStack(X, T, I, full = null) {
    const layers = [];
    let inp = X, dim = I;
    for (const [l, dirs] of MODEL.layers.entries()) {
      const traces = dirs.map((w, d) => (full && l === 0 && d === 0
        ? Object.fromEntries(Object.entries(full.layers[0][0]).map(([q, v]) => [q, v.subarray(0, T * H)]))
        : (MODEL.cell === "lstm" ? lstmLayer : gruLayer)(inp, T, dim, w, d === 1)));
      layers.push(traces);
      const D = traces.length * H, next = new Float64Array(T * D);
      for (let t = 0; t < T; t++) traces.forEach((tr, d) => next.set(tr.h.subarray(t * H, (t + 1) * H), t * D + d * H));
      inp = next;
      dim = D;
    }
    return { layers, top: inp, D: dim };
  }

  // ------------------------------------------------------------------------------------------------
  // Each model's own output
  // ------------------------------------------------------------------------------------------------
  function charOutputs(run, ids) {      // 04: softmax(head(proj(h_t))): the next character's distribution
    const T = ids.length, V = MODEL.head_w.shape[0], Wo = arr(MODEL.head_w), bo = arr(MODEL.head_b);
    const P = MODEL.proj_w ? arr(MODEL.proj_w) : null, pb = MODEL.proj_b ? arr(MODEL.proj_b) : null;
    const e = MODEL.proj_w ? MODEL.proj_w.shape[0] : run.D, z = new Float64Array(e), logits = new Float64Array(V);
    const top5 = [], surprise = [];
    for (let t = 0; t < T; t++) {
      if (P) affine(P, pb, run.top, t * run.D, run.D, e, z, 0); else z.set(run.top.subarray(t * run.D, (t + 1) * run.D));
      affine(Wo, bo, z, 0, e, V, logits, 0);
      let m = -Infinity;
      for (let v = 0; v < V; v++) m = Math.max(m, logits[v]);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[v] - m);
      const logZ = m + Math.log(sum), best = [];
      for (let v = 1; v < V; v++) {                     // index 0 is the unknown marker: never a guess
        if (best.length < 5 || logits[v] > best[4][1]) {
          best.push([v, logits[v]]);
          best.sort((a, b) => b[1] - a[1]);
          if (best.length > 5) best.pop();
        }
      }
      top5.push(best.map(([v, l]) => [v, Math.exp(l - logZ)]));
      surprise.push(t + 1 < T ? logZ - logits[ids[t + 1]] : null);   // -ln p(the character that came next)
    }
    return { top5, surprise };
  }

  function sentimentProbability(top, D, L) {   // 02: head([last, max, mean] over the first L steps) -> P(positive)
    const f = new Float64Array(3 * D);
    if (MODEL.bidirectional) {               // last: forward after step L-1, backward after reading back to 0
      for (let k = 0; k < H; k++) { f[k] = top[(L - 1) * D + k]; f[H + k] = top[H + k]; }
    } else {
      for (let k = 0; k < D; k++) f[k] = top[(L - 1) * D + k];
    }
    for (let k = 0; k < D; k++) {
      let mx = -Infinity, s = 0;
      for (let t = 0; t < L; t++) { const v = top[t * D + k]; mx = Math.max(mx, v); s += v; }
      f[D + k] = mx;                          // (P2) max over the valid steps
      f[2 * D + k] = s / L;                   // (P1) mean
    }
    const logits = new Float64Array(2);
    affine(arr(MODEL.head_w), arr(MODEL.head_b), f, 0, 3 * D, 2, logits, 0);
    return 1 / (1 + Math.exp(logits[0] - logits[1]));   // softmax's second class: positive
  }

  function segmentOutputs(run, tokens) {     // 05: emissions, then Viterbi (CRF5) over the B/M/E/S rules (+ CRF)
    const T = tokens.length, em = new Float64Array(T * 4);
    for (let t = 0; t < T; t++) affine(arr(MODEL.head_w), arr(MODEL.head_b), run.top, t * run.D, run.D, 4, em, t * 4);
    const A = arr(MODEL.transitions), start = arr(MODEL.start), end = arr(MODEL.end);
    let best = [0, 1, 2, 3].map((j) => start[j] + em[j]);
    const back = [];
    for (let t = 1; t < T; t++) {
      const ptr = [], next = [];
      for (let j = 0; j < 4; j++) {
        let bi = 0;
        for (let i = 1; i < 4; i++) if (best[i] + A[i * 4 + j] > best[bi] + A[bi * 4 + j]) bi = i;
        ptr.push(bi);
        next.push(best[bi] + A[bi * 4 + j] + em[t * 4 + j]);
      }
      back.push(ptr);
      best = next;
    }
    let tag = 0;
    for (let j = 1; j < 4; j++) if (best[j] + end[j] > best[tag] + end[tag]) tag = j;
    const path = [tag];
    for (let t = T - 1; t > 0; t--) { tag = back[t - 1][tag]; path.push(tag); }
    path.reverse();
    const tags = path.map((k) => TAGS[k]).join(""), words = [];
    let s = 0;
    for (let k = 0; k < T; k++) if ("ES".includes(tags[k]) || k === T - 1) { words.push(tokens.slice(s, k + 1).join("")); s = k + 1; }
    return { emissions: Array.from(em), tags, words };
  }

  // ------------------------------------------------------------------------------------------------
  // The page: compute on every edit, draw the coloured text and the heatmap, explain a step on hover
  // ------------------------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const GE = { done: false, result: null, model: MODEL };
  window.GE = GE;
  let runningJob = 0;

  function compute(text) {
    const t0 = performance.now();
    const read1 = read(text);
    const T = read1.ids.length;
    if (T === 0) return { ...read1, T, layers: [], outputs: {}, ms: 0 };
    const { X, I } = inputs(read1.tokens, read1.ids);
    const run = runStack(X, T, I);
    const outputs = {};
    if (MODEL.kind === "charlm") Object.assign(outputs, charOutputs(run, read1.ids));
    if (MODEL.kind === "segment") Object.assign(outputs, segmentOutputs(run, read1.tokens));
    if (MODEL.kind === "sentiment") {
      outputs.probability = sentimentProbability(run.top, run.D, T);   // the model's verdict on the whole text
      outputs.running = new Array(T).fill(null);
      if (!MODEL.bidirectional) for (let L = 1; L <= T; L++) outputs.running[L - 1] = sentimentProbability(run.top, run.D, L);
      outputs.running[T - 1] = outputs.probability;
    }
    return { ...read1, T, X, I, layers: run.layers, outputs, ms: performance.now() - t0 };   // layers: for reuse
  }

  // A bidirectional classifier reads the text to the end and back: P(positive | first L tokens) needs a new
  // run for every L. Done in slices after the first drawing, so typing never waits for it.
  function fillRunning(res, job) {
    let L = 1, drawn = performance.now();
    function slice() {
      if (job !== runningJob) return;
      const until = performance.now() + 40;
      while (L < res.T && performance.now() < until) {
        const run = runStack(res.X.subarray(0, L * res.I), L, res.I, res);
        res.outputs.running[L - 1] = sentimentProbability(run.top, run.D, L);
        L++;
      }
      if (L >= res.T || performance.now() - drawn > 300) { drawText(res); drawn = performance.now(); }
      if (L < res.T) setTimeout(slice, 0); else finish(res);
    }
    setTimeout(slice, 0);
  }

  function update() {
    const job = ++runningJob, t0 = performance.now();
    GE.done = false;
    const res = compute($("text").value);
    res.t0 = t0;
    GE.result = res;
    GE.text = $("text").value;
    notes(res);
    const t1 = performance.now();
    draw(res);
    res.drawMs = performance.now() - t1;            // computing (res.ms) + drawing = what typing waits for
    if (MODEL.kind === "sentiment" && MODEL.bidirectional && res.T > 1) fillRunning(res, job); else finish(res);
  }

  function finish(res) {
    res.totalMs = performance.now() - res.t0;       // until every output is in (a bidirectional P(positive) last)
    const ms = res.ms.toFixed(0), drawn = (res.drawMs || 0).toFixed(0);
    $("status").textContent = res.T
      ? `${res.T} 步：计算 ${ms} 毫秒，绘图 ${drawn} 毫秒 · ${res.T} steps: computed in ${ms} ms, drawn in ${drawn} ms`
      : "";
    GE.done = true;
  }

  function notes(res) {
    const lines = [];
    if (res.T === 0) {
      lines.push(MODEL.reader === "words"
        ? "没有找到可读的词：请输入一些文字。· No words found: type some text."
        : "请输入一些文字。· Type some text.");
    }
    if (res.cut) lines.push(`文字超过 ${MODEL.max_chars} 个字符，只读前 ${MODEL.max_chars} 个（少读了 ${res.cut} 个）。· ` +
      `The text is over ${MODEL.max_chars} characters: only the first ${MODEL.max_chars} are read (${res.cut} left out).`);
    if (res.modelCut) lines.push(`模型只读前 ${MODEL.max_len} 个词元（训练时的上限）。· The model reads only the first ` +
      `${MODEL.max_len} tokens (its training limit).`);
    if (res.unknown.length) lines.push(`模型没见过这些字符，按“未知”读入（虚线框）：· Never seen by this model, read as ` +
      `unknown (dashed box): ${res.unknown.map((t) => (t === "\n" ? "↵" : t)).join(" ")}`);
    $("notes").innerHTML = "";
    for (const line of lines) { const d = document.createElement("div"); d.textContent = line; $("notes").appendChild(d); }
  }

  function picked() {
    const layer = +$("layer").value, dir = +$("direction").value || 0, q = $("quantity").value;
    const unit = Math.min(Math.max(0, Math.floor(+$("unit").value) || 0), H - 1);
    return { layer, dir, q, unit };
  }

  function values(res, p) { return res.layers[p.layer][p.dir][p.q]; }

  function scaleOf(res, p, unit) {   // gates live in [0, 1], g/n/h in [-1, 1]; c is unbounded: each hidden
    if (p.q !== "c") return 1;        // unit's c is scaled by its own largest |c| in this text
    let m = 1e-9;
    const v = values(res, p);
    for (let t = 0; t < res.T; t++) m = Math.max(m, Math.abs(v[t * H + unit]));
    return m;
  }

  function rgb(v, gate, scale) {
    if (gate) {                                   // 0 white -> 1 green
      const a = Math.min(Math.max(v, 0), 1);
      return [255 - 200 * a, 255 - 90 * a, 255 - 190 * a];
    }
    const a = Math.max(-1, Math.min(1, v / scale));  // blue < 0 < red
    return a >= 0 ? [255, 255 - 170 * a, 255 - 190 * a] : [255 + 190 * a, 255 + 120 * a, 255];
  }
  const colour = (v, gate, scale) => `rgb(${rgb(v, gate, scale).map(Math.round).join(",")})`;

  function draw(res) {
    drawText(res);
    drawHeatmap(res);
    const p = picked();
    $("legend").textContent = GATES.has(p.q)
      ? "门的值：白 = 0（关），绿 = 1（开）。· Gate value: white = 0 (closed), green = 1 (open)."
      : `蓝 < 0 < 红${p.q === "c" ? "（每个隐藏单元按它在本段文字里最大的 |c| 缩放）" : ""}。· Blue < 0 < red` +
        `${p.q === "c" ? " (each hidden unit scaled by its own largest |c| in this text)" : ""}.`;
  }

  function outputLabel(res, t) {
    const out = res.outputs;
    if (MODEL.kind === "charlm") {
      const guess = MODEL.vocab[out.top5[t][0][0]];
      return [guess === "\n" ? "↵" : guess, t + 1 < res.T && out.top5[t][0][0] === res.ids[t + 1]];
    }
    if (MODEL.kind === "segment") return [out.tags[t], false];
    const p = out.running[t];
    return [p === null ? "…" : p.toFixed(2), false];
  }

  function drawText(res) {
    const box = $("coloured");
    box.innerHTML = "";
    $("verdict").textContent = "";
    if (!res.T) return;
    const p = picked(), v = values(res, p), scale = scaleOf(res, p, p.unit), gate = GATES.has(p.q);
    const frag = document.createDocumentFragment();
    res.tokens.forEach((tok, t) => {
      const span = document.createElement("span");
      span.className = "tok" + (res.ids[t] === MODEL.unk ? " unk" : "");
      span.dataset.t = t;
      const top = document.createElement("span");
      top.className = "t";
      top.textContent = tok === "\n" ? "↵" : tok;
      top.style.background = colour(v[t * H + p.unit], gate, scale);
      const [label, hit] = outputLabel(res, t);
      const bottom = document.createElement("span");
      bottom.className = "o" + (hit ? " hit" : "");
      bottom.textContent = label;
      span.append(top, bottom);
      frag.appendChild(span);
      if (MODEL.reader === "words") frag.appendChild(document.createTextNode(" "));
      if (tok === "\n") frag.appendChild(document.createElement("br"));
    });
    box.appendChild(frag);
    const out = res.outputs;
    if (MODEL.kind === "charlm") $("verdict").textContent = "每个字下面：模型猜的下一个字（绿 = 猜对）。· Under each character: the model's " +
      "guess for the next one (green = right).";
    if (MODEL.kind === "segment") $("verdict").textContent = "分词 · Words: " + out.words.join(" / ");
    if (MODEL.kind === "sentiment") {
      $("verdict").textContent = `正面的概率 P(positive) = ${out.probability.toFixed(3)}。每个词元下面：只读到那里时的概率。` +
        ` · Under each token: the probability after reading up to it.` +
        (MODEL.members > 1 ? ` (集成模型的第 1 个成员，共 ${MODEL.members} 个 · member 1 of the ${MODEL.members}-model ensemble)` : "");
    }
  }

  function drawHeatmap(res) {
    const canvas = $("heatmap");
    if (!res.T) { canvas.width = canvas.height = 1; return; }
    const p = picked(), v = values(res, p), gate = GATES.has(p.q);
    const cw = Math.max(2, Math.min(14, Math.floor(1100 / res.T))), ch = H > 256 ? 1 : H > 96 ? 2 : H > 32 ? 4 : 8;
    canvas.width = res.T * cw;
    canvas.height = H * ch;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(canvas.width, canvas.height);
    for (let u = 0; u < H; u++) {
      const scale = scaleOf(res, p, u);
      for (let t = 0; t < res.T; t++) {
        const c = rgb(v[t * H + u], gate, scale);
        for (let y = u * ch; y < (u + 1) * ch; y++) {
          for (let x = t * cw; x < (t + 1) * cw; x++) {
            const o = 4 * (y * canvas.width + x);
            img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
          }
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    ctx.strokeStyle = "#000";
    ctx.strokeRect(0.5, p.unit * ch - 0.5, canvas.width - 1, ch + 1);   // the picked unit
    canvas.onclick = (ev) => {
      const r = canvas.getBoundingClientRect();
      $("unit").value = Math.floor((ev.clientY - r.top) / ch);
      showStep(res, Math.floor((ev.clientX - r.left) / cw));
      draw(res);
    };
  }

  function showStep(res, t) {
    if (!res || t < 0 || t >= res.T) return;
    const p = picked(), rows = [];
    for (const [q, name] of QUANTITIES) rows.push(`<tr><th>${name}</th><td>${res.layers[p.layer][p.dir][q][t * H + p.unit].toFixed(4)}</td></tr>`);
    let out = "";
    if (MODEL.kind === "charlm") {
      out = "下一个字的前 5 名 · next-character top 5: " + res.outputs.top5[t]
        .map(([v, pr]) => `${esc(MODEL.vocab[v] === "\n" ? "↵" : MODEL.vocab[v])} ${(100 * pr).toFixed(1)}%`).join(", ");
      if (res.outputs.surprise[t] !== null) out += ` · 实际下一个字的 −ln p · −ln p(actual next) = ${res.outputs.surprise[t].toFixed(2)}`;
    } else if (MODEL.kind === "segment") {
      out = `标签 tag: ${res.outputs.tags[t]} · 发射分数 emissions B M E S: ` +
        res.outputs.emissions.slice(4 * t, 4 * t + 4).map((x) => x.toFixed(2)).join(" ");
    } else {
      const pr = res.outputs.running[t];
      out = `读到这里时正面的概率 · P(positive) so far: ${pr === null ? "…" : pr.toFixed(3)}`;
    }
    const tok = res.tokens[t] === "\n" ? "↵" : res.tokens[t];
    $("detail").innerHTML = `<b>第 ${t + 1} 步 step ${t + 1}: “${esc(tok)}”</b>${res.ids[t] === MODEL.unk ? "（未知 unknown）" : ""} · ` +
      `第 ${p.layer + 1} 层 layer ${p.layer + 1}, 隐藏单元 unit ${p.unit}<table>${rows.join("")}</table>${out}`;
  }

  const esc = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

  // ------------------------------------------------------------------------------------------------
  // Setting up: navigation, the about line, the controls, the interpretable units, the first text
  // ------------------------------------------------------------------------------------------------
  function setup() {
    const hash = decodeURIComponent(location.hash.slice(1));
    for (const page of PAGES) {
      const a = document.createElement("a");
      a.textContent = page.title;
      a.href = page.file;
      if (page.name === MODEL.name) a.className = "here";
      a.onclick = () => { a.href = page.file + "#" + encodeURIComponent($("text").value); };  // keep the text
      $("nav").appendChild(a);
    }
    $("about").textContent = `${MODEL.cell.toUpperCase()}（${MODEL.impl}），${MODEL.layers.length} 层 × ${H} 个隐藏单元` +
      `${MODEL.bidirectional ? "，双向" : ""} · ${MODEL.layers.length} layer(s) × ${H} units` +
      `${MODEL.bidirectional ? ", bidirectional" : ""} · ${MODEL.path}${MODEL.quick ? "（--quick 模型 · a --quick model）" : ""}` +
      ` · 训练命令 made by: ${MODEL.command}`;
    MODEL.layers.forEach((_, l) => $("layer").add(new Option(`第 ${l + 1} 层 · layer ${l + 1}`, l)));
    if (MODEL.bidirectional) {
      $("direction").add(new Option("从左到右 · left to right", 0));
      $("direction").add(new Option("从右到左 · right to left", 1));
    } else {
      $("direction").add(new Option("从左到右 · left to right", 0));
      $("direction-box").style.display = "none";
    }
    for (const [q, name] of QUANTITIES) $("quantity").add(new Option(name, q));
    $("quantity").value = MODEL.cell === "lstm" ? "c" : "h";
    $("unit").max = H - 1;
    const units = (MODEL.analysis && MODEL.analysis.units) || [];
    if (units.length) $("units").append("可解释的隐藏单元（在验证集上找到）· Interpretable hidden units (found on validation text): ");
    for (const u of units) {
      const b = document.createElement("button");
      b.textContent = `${u.feature}: 第 ${u.layer + 1} 层 layer ${u.layer + 1} ${u.quantity}[${u.unit}], r = ${u.r.toFixed(2)}` +
        (u.found ? "" : "（和碰巧的水平差不多 · near chance）");
      b.title = `未训练的同形模型里最好的隐藏单元 · best hidden unit of an untrained twin: |r| = ${u.chance.toFixed(2)}`;
      b.onclick = () => {
        $("layer").value = u.layer; $("quantity").value = u.quantity; $("unit").value = u.unit;
        $("text").value = u.example;
        update();
      };
      $("units").appendChild(b);
    }
    if (units.length) {                     // start on the unit that tracks its feature best
      const margin = (u) => Math.abs(u.r) - u.chance;
      const u = units.reduce((a, b) => (margin(b) > margin(a) ? b : a));
      $("layer").value = u.layer; $("quantity").value = u.quantity; $("unit").value = u.unit;
    }
    $("text").value = hash || MODEL.example;
    let timer = null;
    $("text").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 120); });
    for (const id of ["layer", "direction", "quantity", "unit"]) $(id).addEventListener("input", () => GE.result && draw(GE.result));
    $("coloured").addEventListener("mouseover", (ev) => {
      const span = ev.target.closest(".tok");
      if (span) showStep(GE.result, +span.dataset.t);
    });
    update();
  }

  // For tests and curious learners: every number of the last run as plain arrays (console: GE.export())
  GE.export = function () {
    const r = GE.result;
    if (!r) return null;
    const o = r.outputs;
    return {
      tokens: r.tokens, ids: r.ids, unknown: r.unknown, cut: r.cut, modelCut: r.modelCut,
      layers: r.layers.map((dirs) => dirs.map((tr) => Object.fromEntries(Object.entries(tr).map(([k, v]) => [k, Array.from(v)])))),
      outputs: { ...o, running: o.running ? Array.from(o.running) : undefined },
      notes: Array.from($("notes").children).map((d) => d.textContent),
      ms: r.ms, drawMs: r.drawMs, totalMs: r.totalMs,
    };
  };

  setup();
})();
