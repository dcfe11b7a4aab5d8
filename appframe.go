package corepipe

import "strings"

// InApp reports whether frame f is the program's own code, as error
// trackers' "in app" means: a function of package main or of the main
// module. The runtime, the standard library and other modules are not,
// and crash pages fold them away. Without a main module (a stripped
// binary, a C program), any function of a module path counts.
func (r *Report) InApp(f Frame) bool {
	pkg := packageOf(f.Function)
	if pkg == "main" {
		return true
	}
	if r.Go != nil && r.Go.MainModule != "" {
		return pkg == r.Go.MainModule || strings.HasPrefix(pkg, r.Go.MainModule+"/")
	}
	first, _, _ := strings.Cut(pkg, "/")
	return strings.Contains(first, ".")
}

// packageOf is the import path of a Go function as the runtime prints it:
// github.com/a/b.(*T).M is github.com/a/b, main.main.func1 is main.
func packageOf(fn string) string {
	slash := strings.LastIndex(fn, "/")
	dot := strings.Index(fn[slash+1:], ".")
	if dot < 0 {
		return ""
	}
	return fn[:slash+1+dot]
}
