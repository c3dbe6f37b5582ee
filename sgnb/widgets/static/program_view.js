// sgnb ProgramView: marked program text (left) and the fork tree (right). Data: the `program` trait,
// built in Python by sgnb/widgets/program_data.py. No imports: this file is loaded as a standalone ESM.

const KIND_LABEL = {
  cache: "prompt from cache", computed: "prompt computed", generated: "generated",
  forced: "forced (jump-forward)", prompt: "prompt", pending: "pending", unsent: "not sent",
};

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function short(value, limit = 80) {
  const s = typeof value === "string" ? value : JSON.stringify(value);
  return s.length <= limit ? s : s.slice(0, limit) + "…";
}

function tokenTip(seg) {
  const lines = [(seg.thumbnail !== undefined ? "image · " : "") + (KIND_LABEL[seg.kind] || seg.kind)];
  if (seg.num_tokens) lines[0] += ` · ${seg.num_tokens} token${seg.num_tokens === 1 ? "" : "s"}`;
  if (seg.approximate) lines.push("cache boundary estimated");
  if (seg.var) lines.push(`variable ${seg.var}${seg.streaming ? " (streaming)" : ""}`);
  if (seg.token_id !== undefined && seg.token_id !== null) lines.push(`token id ${seg.token_id}`);
  if (seg.logprob !== undefined && seg.logprob !== null) {
    lines.push(`logprob ${seg.logprob.toFixed(3)}  (p=${Math.exp(seg.logprob).toFixed(3)})`);
  }
  if (seg.top && seg.top.length) {
    lines.push("top alternatives:");
    for (const [tok, lp] of seg.top) lines.push(`  ${JSON.stringify(tok).padEnd(16)} ${lp.toFixed(3)}`);
  }
  return lines.join("\n");
}

function spanTip(span) {
  const lines = [`${span.kind} ${span.name ?? ""}`];
  for (const key of ["prompt_tokens", "cached_tokens", "completion_tokens"]) {
    if (span[key] !== null && span[key] !== undefined) lines.push(`${key}: ${JSON.stringify(span[key])}`);
  }
  if (span.num_forced) lines.push(`forced tokens: ${span.num_forced}`);
  if (span.finish_reason) lines.push(`finish: ${JSON.stringify(span.finish_reason)}`);
  if (span.choices) {
    lines.push("choices (mean logprob):");
    for (const [c, s] of span.choices) lines.push(`  ${JSON.stringify(c)} ${s === null ? "" : s.toFixed(3)}`);
  }
  return lines.join("\n");
}

function render({ model, el }) {
  el.classList.add("sgnb-w", "sgnb-pv");
  const header = h("div", { class: "sgnb-header" });
  const textBox = h("div", { class: "sgnb-pv-text" });
  const treeBox = h("div", { class: "sgnb-pv-tree" });
  const errorBox = h("div", { class: "sgnb-error" });
  const tip = h("div", { class: "sgnb-tip" });
  el.append(header, h("div", { class: "sgnb-pv-body" }, textBox, treeBox), errorBox, tip);

  function showTip(event, text) {
    tip.textContent = text;
    tip.style.display = "block";
    const box = el.getBoundingClientRect();
    tip.style.left = `${Math.min(event.clientX - box.left + 12, Math.max(0, box.width - 280))}px`;
    tip.style.top = `${event.clientY - box.top + 16}px`;
  }
  const hideTip = () => { tip.style.display = "none"; };
  textBox.addEventListener("mouseleave", hideTip);

  function drawHeader(data, state) {
    const status = data.error ? "error" : (data.is_finished ? "finished" : (data.states.length ? "running" : "idle"));
    el.dataset.status = status;
    el.dataset.numStates = String(data.states.length);
    el.dataset.updates = String(model.get("num_updates"));
    const title = model.get("title");
    const chips = ["cache", "computed", "generated", "forced"].map((kind) =>
      h("span", { class: "sgnb-chip", "data-kind": kind, "data-tokens": (data.totals || {})[kind] ?? 0,
        title: `${KIND_LABEL[kind]} tokens` }, `${KIND_LABEL[kind]}: ${(data.totals || {})[kind] ?? 0}`));
    header.replaceChildren(
      ...(title ? [h("span", { class: "sgnb-title", text: title })] : []),
      h("span", { class: "sgnb-status", "data-status": status, text: status }),
      ...chips,
      h("span", { class: "sgnb-chip", text: state ? `showing ${state.id}` : "" }),
    );
  }

  // One state's marked text from char `since` on; gen/select spans are wrapped and labelled.
  function markedText(state, since) {
    const frag = document.createDocumentFragment();
    let group = null;
    let groupIndex = null;
    let groupStreaming = false;
    for (const seg of state.segments) {
      if (seg.end <= since) continue;
      const tok = h("span", { class: "sgnb-tok", "data-kind": seg.kind,
        "data-has-logprob": seg.logprob !== undefined && seg.logprob !== null });
      let piece = state.text.slice(Math.max(seg.start, since), seg.end);
      if (since > 0 && seg.start <= since) piece = piece.replace(/^\n/, "");  // a fork block starts on its own line
      if (seg.thumbnail !== undefined) {  // an image: its thumbnail in place of the placeholder text
        tok.dataset.image = "true";
        tok.append(seg.thumbnail ? h("img", { class: "sgnb-img", src: seg.thumbnail, alt: piece }) : "[image]");
      } else tok.textContent = piece;
      tok.addEventListener("mousemove", (e) => { e.stopPropagation(); showTip(e, tokenTip(seg)); });
      const index = seg.span ?? null;
      const streaming = !!seg.streaming;
      if (index === null && !streaming) { group = null; groupIndex = null; frag.append(tok); continue; }
      if (group === null || index !== groupIndex || streaming !== groupStreaming) {
        const span = index !== null ? state.spans[index] : { kind: "gen", name: seg.var };
        const label = h("span", { class: "sgnb-var-label", text: span.name ?? span.kind });
        label.addEventListener("mousemove", (e) => { e.stopPropagation(); showTip(e, spanTip(span)); });
        group = h("span", { class: "sgnb-span", "data-var": span.name ?? "", "data-span-kind": span.kind,
          "data-streaming": streaming }, label);
        groupIndex = index;
        groupStreaming = streaming;
        frag.append(group);
      }
      group.append(tok);
    }
    return frag;
  }

  // The selected state's whole text, then each descendant's own text (after its fork point), depth first.
  function drawText(state, byId) {
    const stick = textBox.scrollTop + textBox.clientHeight >= textBox.scrollHeight - 4;
    if (!state) { textBox.replaceChildren(); return; }
    textBox.dataset.state = state.id;
    textBox.dataset.chars = String(state.text.length);
    const blocks = [h("div", { class: "sgnb-state-text", "data-state": state.id }, markedText(state, 0))];
    const visit = (parent) => {
      for (const childId of parent.children) {
        const child = byId.get(childId);
        if (!child) continue;
        blocks.push(h("div", { class: "sgnb-fork-block", "data-state": child.id,
          style: `margin-left:${12 * (child.depth - state.depth)}px` },
        h("div", { class: "sgnb-fork-head", text: `fork ${child.id} of ${parent.id}`,
          onclick: () => { model.set("selected_state", child.id); model.save_changes(); } }),
        markedText(child, child.fork_start)));
        visit(child);
      }
    };
    visit(state);
    textBox.replaceChildren(...blocks);
    if (stick) textBox.scrollTop = textBox.scrollHeight;
  }

  function drawTree(data, selectedId) {
    const rows = [h("div", { style: "font-weight:600;margin-bottom:4px", text: "fork tree" })];
    for (const state of data.states) {
      const status = state.error ? "error" : (state.is_finished ? "done" : "running");
      const vars = Object.entries(state.own_variables || state.variables).map(([k, v]) =>
        h("div", { class: "sgnb-var" }, h("b", { text: k }), ` = ${short(v)}`));
      for (const [k, v] of Object.entries(state.partial_variables || {})) {
        vars.push(h("div", { class: "sgnb-var", "data-partial": "true" }, h("b", { text: k }), ` = ${short(v)}…`));
      }
      const row = h("div", {
        class: "sgnb-fork-node", "data-state": state.id, "data-depth": state.depth,
        "data-num-vars": vars.length, "data-selected": state.id === selectedId,
        style: `margin-left:${14 * state.depth}px`,
        onclick: () => { model.set("selected_state", state.id); model.save_changes(); },
      },
      h("span", { class: "sgnb-sid", text: state.id }),
      h("span", { class: "sgnb-status", "data-status": status === "done" ? "finished" : status,
        style: "margin-left:6px", text: status }),
      state.children.length ? h("span", { class: "sgnb-chip", text: `${state.children.length} forks` }) : null,
      ...vars);
      rows.push(row);
    }
    treeBox.replaceChildren(...rows);
  }

  function draw() {
    const data = model.get("program") || { states: [] };
    const states = data.states || [];
    const wanted = model.get("selected_state") || data.root;
    const state = states.find((s) => s.id === wanted) || states[0];
    drawHeader(data, state);
    drawText(state, new Map(states.map((s) => [s.id, s])));
    drawTree(data, state ? state.id : null);
    errorBox.textContent = data.error || "";
  }

  model.on("change:program", draw);
  model.on("change:selected_state", draw);
  model.on("change:title", draw);
  draw();
  return () => {
    model.off("change:program", draw);
    model.off("change:selected_state", draw);
    model.off("change:title", draw);
  };
}

export default { render };
