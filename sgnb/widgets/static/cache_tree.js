// sgnb CacheTree: gauges, the radix tree (click a node for its full text), details. With the tiered cache on,
// each node is tagged and coloured by where its KV sits, and each tier has a gauge. Data: the `cache` trait,
// built in Python by sgnb/widgets/cache_data.py; `source` names the engine or server, `error` is the server's
// last failure ("" once it answers again). No imports: this file is loaded as a standalone ESM.

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

// Where a node's KV sits, with the tiered cache on (`tier` of each node, `tiers` of the cache).
const TIER_LABELS = { device: "pool", host: "host memory", disk: "disk" };

function gauge(label, fraction, caption, tier) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return h("div", {
    class: "sgnb-gauge", "data-label": label, "data-value": (fraction || 0).toFixed(4), "data-tier": tier },
    h("div", { text: `${label}: ${caption}` }),
    h("div", { class: "sgnb-bar" }, h("div", { class: "sgnb-fill", style: `width:${pct.toFixed(1)}%` })));
}

const megabytes = (bytes) => (bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 0);

// The tiered cache's parts of the header: a legend, a gauge per lower tier, hits by tier, pages moved.
function tierHeader(tiers, hicache) {
  const legend = h("span", { class: "sgnb-ct-legend" }, ...Object.entries(TIER_LABELS).map(([tier, label]) =>
    h("span", { class: "sgnb-ct-tier", "data-tier": tier, text: label })));
  const gauges = ["host", "disk"].filter((tier) => tiers[tier]).map((tier) => gauge(TIER_LABELS[tier],
    tiers[tier].usage, `${megabytes(tiers[tier].used_bytes)}/${megabytes(tiers[tier].capacity_bytes)} MB`, tier));
  const chips = [];
  if (hicache) {
    const hits = hicache.hits_by_tier || {};
    chips.push(h("span", { class: "sgnb-chip sgnb-ct-tier-hits",
      text: `hit tokens by tier: pool ${hits.device || 0} · host ${hits.host || 0} · disk ${hits.disk || 0}` }));
    chips.push(h("span", { class: "sgnb-chip", text: `pages ${hicache.pages_written} written · ` +
      `${hicache.pages_loaded} loaded · ${hicache.pages_dropped} dropped (${hicache.write_policy})` }));
  }
  return [legend, ...gauges, ...chips];
}

function render({ model, el }) {
  el.classList.add("sgnb-w", "sgnb-ct");
  const header = h("div", { class: "sgnb-header" });
  const treeBox = h("div", { class: "sgnb-ct-tree" });
  const detail = h("div", { class: "sgnb-ct-detail", text: "click a node to see its full text" });
  el.append(header, h("div", { class: "sgnb-ct-body" }, treeBox, detail));

  function drawHeader(c) {
    const used = (c.num_slots || 0) - (c.num_free_slots || 0);
    const error = model.get("error");
    el.dataset.error = error ? "true" : "false";
    header.replaceChildren(
      h("span", { class: "sgnb-title", text: "radix cache" }),
      h("span", { class: "sgnb-chip sgnb-ct-source", text: model.get("source") }),
      ...(error ? [h("span", { class: "sgnb-chip sgnb-ct-error", style: "color:#b00020;white-space:normal",
        text: `⚠ ${error}` })] : []),
      gauge("pool usage", c.pool_usage, `${used}/${c.num_slots || 0} slots`, c.tiers ? "device" : undefined),
      ...(c.tiers ? tierHeader(c.tiers, c.hicache) : []),
      gauge("hit rate", c.hit_rate, `${((c.hit_rate || 0) * 100).toFixed(1)}%`),
      h("span", { class: "sgnb-chip", "data-kind": "cache",
        text: `${c.cached_tokens || 0} cached tok (${c.evictable_tokens || 0} evictable, ${c.protected_tokens || 0} locked)` }),
      h("span", { class: "sgnb-chip", text: `${c.num_nodes || 0} nodes` }),
      h("span", { class: "sgnb-chip", text: `${c.num_evicted_tokens || 0} evicted` }),
      h("span", { class: "sgnb-chip", "data-kind": (c.num_running ? "generated" : undefined),
        text: `${c.num_running || 0} running · ${c.num_waiting || 0} waiting` }),
    );
  }

  function drawTree(c) {
    const nodes = c.nodes || [];
    const children = new Map();
    for (const n of nodes) {
      if (!children.has(n.parent)) children.set(n.parent, []);
      children.get(n.parent).push(n);
    }
    const maxTokens = Math.max(1, ...nodes.filter((n) => n.parent !== null).map((n) => n.num_tokens));
    const selected = model.get("selected_node");
    const rows = [];
    const visit = (n, depth) => {
      const isRoot = n.parent === null;
      const badges = isRoot ? [] : [`${n.num_tokens} tok`, `hits ${n.hit_count}`];
      if (n.num_image_tokens) badges.unshift(`image: ${n.num_image_tokens} tok`);
      if (n.lock_ref > 0) badges.push(`🔒${n.lock_ref}`);
      else if (n.lru_rank !== null && n.lru_rank !== undefined) badges.push(`evict #${n.lru_rank}`);
      const row = h("div", {
        class: "sgnb-ct-node", "data-node": n.id, "data-tokens": n.num_tokens, "data-hits": n.hit_count,
        "data-lock": n.lock_ref, "data-locked": n.lock_ref > 0, "data-selected": n.id === selected,
        "data-tier": n.tier, "data-image-tokens": n.num_image_tokens || 0, style: `padding-left:${4 + 16 * depth}px`,
        title: isRoot ? "root" : `node ${n.id}: ${n.num_tokens} tokens, depth ${n.depth_tokens} tokens, ` +
          `${n.hit_count} hits, lock_ref ${n.lock_ref}, last access ${n.last_access}` +
          (c.tiers ? `, KV in ${TIER_LABELS[n.tier]}` : ""),
        onclick: () => { model.set("selected_node", n.id); model.save_changes(); },
      },
      c.tiers && !isRoot ? h("span", { class: "sgnb-ct-tier", "data-tier": n.tier, text: TIER_LABELS[n.tier] }) : null,
      isRoot ? null : h("span", { class: "sgnb-ct-size",
        style: `width:${Math.max(2, Math.round(40 * n.num_tokens / maxTokens))}px` }),
      h("span", { class: "sgnb-ct-text", text: isRoot ? "root" : JSON.stringify(n.text) }),
      badges.length ? h("span", { class: "sgnb-ct-meta", text: `  ${badges.join(" · ")}` }) : null);
      rows.push(row);
      for (const child of children.get(n.id) || []) visit(child, depth + 1);
    };
    for (const root of children.get(null) || []) visit(root, 0);
    if (c.truncated) {
      rows.push(h("div", { class: "sgnb-ct-meta", text: `… ${c.num_nodes - c.num_shown} more nodes not shown` }));
    }
    treeBox.replaceChildren(...rows);
    el.dataset.numNodes = String(c.num_nodes || 0);
    el.dataset.numShown = String(nodes.length);
    el.dataset.updates = String(model.get("num_updates"));
  }

  function drawDetail() {
    const info = model.get("selected_info") || {};
    if (info.id === undefined) { detail.textContent = "click a node to see its full text"; return; }
    detail.dataset.node = String(info.id);
    if (info.error) { detail.textContent = info.error; return; }
    detail.replaceChildren(
      h("div", { style: "font-weight:600;margin-bottom:4px", text: `node ${info.id}: ${info.num_tokens} tokens from the root` }),
      h("div", { class: "sgnb-ct-fulltext", text: model.get("selected_text") }),
    );
  }

  const drawAll = () => { const c = model.get("cache") || {}; drawHeader(c); drawTree(c); };
  model.on("change:cache", drawAll);
  model.on("change:selected_node", drawAll);
  model.on("change:error", drawAll);
  model.on("change:selected_text", drawDetail);
  model.on("change:selected_info", drawDetail);
  drawAll();
  drawDetail();
  return () => {
    model.off("change:cache", drawAll);
    model.off("change:selected_node", drawAll);
    model.off("change:error", drawAll);
    model.off("change:selected_text", drawDetail);
    model.off("change:selected_info", drawDetail);
  };
}

export default { render };
