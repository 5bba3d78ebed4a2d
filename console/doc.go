// Package console serves the operator's web console (SPEC §14) under /ui/ on
// the admin listener: static HTML, CSS and JavaScript embedded in the binary,
// with no external scripts, fonts or CDNs.
//
// It owns those files and the few headers they are served with. It holds no
// data and must not touch the node's state: the page signs in with the admin
// token, keeps it in the browser's session storage and reads and changes
// everything through the authenticated admin API, like any other client.
package console
