// sgnb ConstraintPath: the constrained output with forced runs marked, and a table of every step.
// Data: the `trace` trait, built in Python by sgnb/widgets/constraint_data.py. Standalone ESM, no imports.

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

function render({ model, el }) {
  el.classList.add("sgnb-w", "sgnb-cp");

  function draw() {
    const t = model.get("trace") || { steps: [], segments: [] };
    const steps = t.steps || [];
    el.dataset.numSteps = String(steps.length);
    el.dataset.numForced = String(t.num_forced || 0);
    el.dataset.kind = t.kind || "fsm";
    const stateLabel = t.state_label || "FSM state";
    const title = model.get("title");
    const header = h("div", { class: "sgnb-header" },
      title ? h("span", { class: "sgnb-title", text: title }) : null,
      h("span", { class: "sgnb-chip", "data-kind": "generated", text: `${steps.length - (t.num_forced || 0)} sampled` }),
      h("span", { class: "sgnb-chip", "data-kind": "forced", text: `${t.num_forced || 0} forced by jump-forward` }),
      h("span", { class: "sgnb-chip", text: t.summary || "" }));
    // one span per token, so hovering a table row can highlight its token
    const tokenEls = [];
    const strip = h("div", { class: "sgnb-cp-strip" });
    for (const step of steps) {
      const tok = h("span", { class: "sgnb-tok", "data-kind": step.forced ? "forced" : "generated",
        "data-step": step.index, title: `step ${step.index} · ${stateLabel} ${step.state} · ${step.num_allowed} allowed` });
      tok.textContent = step.token;
      tokenEls.push(tok);
      strip.append(tok);
    }
    const table = h("table", { class: "sgnb-cp-table" },
      h("tr", {}, ...["#", stateLabel, "allowed", "token", "masked top alternatives"].map((x) => h("th", { text: x }))));
    for (const step of steps) {
      const masked = (step.masked_top || []).map(([tok, lp]) => `${JSON.stringify(tok)} ${lp.toFixed(2)}`).join(", ");
      const row = h("tr", { class: "sgnb-step", "data-forced": step.forced,
        onmouseenter: () => { tokenEls[step.index].style.outline = "2px solid currentColor"; },
        onmouseleave: () => { tokenEls[step.index].style.outline = ""; } },
      h("td", { text: String(step.index) }),
      h("td", { text: String(step.state) }),
      h("td", { text: String(step.num_allowed) }),
      h("td", {}, h("span", { "data-kind": step.forced ? "forced" : "generated", text: JSON.stringify(step.token) }),
        step.forced ? " forced" : ""),
      h("td", { class: "sgnb-masked", text: masked }));
      table.append(row);
    }
    el.replaceChildren(header, strip, h("div", { class: "sgnb-cp-scroll" }, table));
  }

  model.on("change:trace", draw);
  model.on("change:title", draw);
  draw();
  return () => { model.off("change:trace", draw); model.off("change:title", draw); };
}

export default { render };
