import { describe, expect, it } from "vitest";
import { renderMarkdown } from "./markdown";

describe("renderMarkdown", () => {
  it("escapes HTML before formatting", () => {
    const html = renderMarkdown('<img src=x onerror="alert(1)"> **bold**');
    expect(html).toBe("<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt; <strong>bold</strong></p>");
  });
  it("renders code, lists and headings", () => {
    const html = renderMarkdown("# Title\n- a\n- *b*\n\n1. one\n2. two\n\n```\nlet x = 1 < 2;\n```");
    expect(html).toContain("<h3>Title</h3>");
    expect(html).toContain("<ul><li>a</li><li><em>b</em></li></ul>");
    expect(html).toContain("<ol><li>one</li><li>two</li></ol>");
    expect(html).toContain("<pre><code>let x = 1 &lt; 2;</code></pre>");
  });
  it("keeps an unclosed fence open while streaming", () => {
    expect(renderMarkdown("```\npartial")).toBe("<pre><code>partial</code></pre>");
  });
  it("only links http(s)", () => {
    expect(renderMarkdown("[a](https://x.org) [b](javascript:alert(1))")).toBe(
      '<p><a href="https://x.org" target="_blank" rel="noreferrer noopener">a</a> [b](javascript:alert(1))</p>',
    );
  });
  it("inline code is literal", () => {
    expect(renderMarkdown("use `**x**`")).toBe("<p>use <code>**x**</code></p>");
  });
});
