"use strict";
// "Flush now"'s waiting page (admin/impressions/flush_wait.html) looks again in the background
// instead of reloading itself every second, which restarted a screen reader each time (WCAG
// 2.2.1). The page answers a redirect once the flush ran (its message then waits in the session):
// this goes back to the page the button was on. Without scripts, a <noscript> refresh does it.
{
    const status = document.getElementById("flush-wait");

    function lookAgainLater(seconds) {
        window.setTimeout(lookAgain, seconds * 1000);
    }

    async function lookAgain() {
        let response;
        try {
            response = await fetch(window.location.href, {
                redirect: "manual",
                credentials: "same-origin",
                cache: "no-store",
            });
        } catch (error) {
            lookAgainLater(Number(status.dataset.refresh));
            return;
        }
        if (response.type === "opaqueredirect") {
            window.location.assign(status.dataset.backUrl);
            return;
        }
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("flush-wait");
        if (!fresh) {  // an error page: show it, as the refresh did
            window.location.reload();
            return;
        }
        // Only news is announced (the region is a status): the note that no worker ran it yet.
        if (fresh.querySelector(".errornote") && !status.querySelector(".errornote")) {
            status.replaceChildren(...Array.from(fresh.childNodes, (node) => document.importNode(node, true)));
        }
        status.dataset.refresh = fresh.dataset.refresh;
        lookAgainLater(Number(fresh.dataset.refresh));
    }

    if (status) {
        lookAgainLater(Number(status.dataset.refresh));
    }
}
