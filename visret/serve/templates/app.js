const form = document.getElementById("upload"), input = document.getElementById("image");
input.addEventListener("change", () => { if (input.files.length) form.submit(); });
["dragenter", "dragover"].forEach(e => form.addEventListener(e, ev => { ev.preventDefault(); form.classList.add("over"); }));
["dragleave", "drop"].forEach(e => form.addEventListener(e, ev => { ev.preventDefault(); form.classList.remove("over"); }));
form.addEventListener("drop", ev => { if (ev.dataTransfer.files.length) { input.files = ev.dataTransfer.files; form.submit(); } });
