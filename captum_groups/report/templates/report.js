(function () {
  "use strict";
  var nodes = Array.prototype.slice.call(document.querySelectorAll("#circuit .node"));
  var edges = Array.prototype.slice.call(document.querySelectorAll("#circuit .edge"));
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var pinned = document.querySelector("#circuit .target-node");

  function show(node) {
    var id = node.getAttribute("data-node");
    var card = node.getAttribute("data-card");
    cards.forEach(function (c) { c.hidden = c.id !== card; });
    nodes.forEach(function (n) { n.classList.toggle("selected", n === node); });
    edges.forEach(function (e) {
      var touches = e.getAttribute("data-lower") === id || e.getAttribute("data-upper") === id;
      e.classList.toggle("related", touches);
    });
  }

  nodes.forEach(function (node) {
    node.addEventListener("mouseenter", function () { show(node); });
    node.addEventListener("mouseleave", function () { show(pinned); });
    node.addEventListener("click", function () { pinned = node; show(node); });
    node.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        pinned = node;
        show(node);
      }
    });
  });
  if (pinned) { show(pinned); }
})();
