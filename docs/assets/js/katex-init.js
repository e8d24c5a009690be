// Renders the \( \) and \[ \] spans that pymdownx.arithmatex (generic mode) emits, with the vendored KaTeX.
function renderMath() {
  document.querySelectorAll(".arithmatex").forEach((element) => {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  });
}
if (typeof document$ !== "undefined") {
  document$.subscribe(renderMath); // mkdocs-material instant navigation
} else {
  document.addEventListener("DOMContentLoaded", renderMath);
}
