"use strict";
// What django-rq's templates did in inline scripts and handlers, which the site's
// Content-Security-Policy refuses, done from a file (see queues/templates/django_rq/).
{
    // The names of the checkboxes, in the page's language: its <script> tag gives them
    // (admin/queues/rq_head.html).
    const names = document.currentScript ? document.currentScript.dataset : {};

    // Django's actions.js counts the selected rows in a span of the admin's changelist markup that
    // django-rq's list pages lack; without it every click threw. Runs before actions.js's own
    // DOMContentLoaded handler, because this file is loaded first.
    function addActionCounter() {
        const actions = document.querySelector("#changelist-form div.actions");
        const rows = document.querySelectorAll("tr input.action-select");
        if (!actions || rows.length === 0 || actions.querySelector("span.action-counter")) {
            return;
        }
        const counter = document.createElement("span");
        counter.className = "action-counter";
        counter.dataset.actionsIcnt = String(rows.length);
        counter.setAttribute("aria-live", "polite");
        actions.append(" ", counter);
    }

    // A job's results are rows that open the result: django-rq's inline onclick (which the
    // template leaves out, queues_rq.without_inline_handlers) becomes a listener.
    function clickableRows() {
        document.querySelectorAll("tr.rq-clickable").forEach(function (row) {
            const link = row.querySelector("a[href]");
            if (!link) {
                return;
            }
            row.addEventListener("click", function (event) {
                if (!event.target.closest("a")) {
                    window.location.href = link.href;
                }
            });
        });
    }

    // django-rq's checkboxes have no name for a screen reader (Django's own lists name theirs):
    // named as Django names them, each row's by its job's id.
    function nameCheckboxes() {
        const toggle = document.getElementById("action-toggle");
        if (toggle && names.selectAll && !toggle.hasAttribute("aria-label")) {
            toggle.setAttribute("aria-label", names.selectAll);
        }
        if (!names.selectOne) {
            return;
        }
        document.querySelectorAll("tr input.action-select:not([aria-label])").forEach(function (box) {
            box.setAttribute("aria-label", names.selectOne + " - " + box.value);
        });
    }

    document.addEventListener("DOMContentLoaded", function () {
        nameCheckboxes();
        addActionCounter();
        clickableRows();
    });
}
