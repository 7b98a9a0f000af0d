//! Hostile but well-formed input: sizes near the integer limits, very long names, thousands of
//! misspelt references, very long nets. Each is a spanned diagnostic or a checked net, in time
//! linear in the input, never a panic or an overflow.

use netc_syntax::Diagnostic;

fn check(source: &str) -> Result<netc_check::Checked, Vec<Diagnostic>> {
    netc_check::check(&netc_syntax::parse(source).expect("parses"), &[])
}

/// The one error of `source`: its code and the text its primary label points at.
fn error(source: &str) -> (String, &str, Diagnostic) {
    let errors = check(source).expect_err("must not check");
    let errors: Vec<Diagnostic> = errors.into_iter().filter(|d| d.severity == netc_syntax::Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let d = errors.into_iter().next().unwrap();
    let range = d.labels[0].range.clone();
    (d.code.clone().unwrap(), &source[range], d)
}

fn net(layers: &str) -> String {
    format!("net n {{ input x: [1, 28, 28]\n {layers}\n flatten\n dense(10)\n loss softmax_xent(classes=10) }}")
}

const MAX: i64 = i64::MAX;

#[test]
fn windows_and_pads_near_the_integer_limit_are_spanned_errors() {
    let pad = net(&format!("maxpool(k={MAX}, stride={MAX}, pad={})", MAX - 1));
    let (code, at, d) = error(&pad);
    assert_eq!((code.as_str(), at), ("E0300", &*(MAX - 1).to_string()));
    assert!(d.message.contains("more than a tensor can hold"), "{}", d.message);

    let conv = net(&format!("conv(4, k=1, stride={MAX}, pad={MAX})"));
    let (code, at, _) = error(&conv);
    assert_eq!((code.as_str(), at), ("E0300", &*MAX.to_string()));

    let kernel = net(&format!("conv(4, k=[{MAX}, {MAX}])"));
    let (code, at, _) = error(&kernel);
    assert_eq!((code.as_str(), at), ("E0300", &*format!("[{MAX}, {MAX}]")));

    let wide = net(&format!("avgpool(k=3, pad=2, stride={MAX})"));
    let checked = check(&wide).expect("a huge stride only makes the output 1×1");
    assert_eq!(checked.nets[0].layers[0].out_shape, vec![1, 1, 1]);
}

#[test]
fn sizes_whose_products_overflow_are_too_large_not_wrapped() {
    let (code, _, _) = error(&net(&format!("conv({MAX}, k=3)")));
    assert_eq!(code, "E0303");
    let (code, _, _) = error(&net(&format!("dense({MAX})")).replace("flatten\n dense(10)", "dense(10)"));
    assert_eq!(code, "E0303");
    let minmaxout = net(&format!("conv(4, k=1)\n minmaxout(pieces={MAX}, units={MAX})"));
    let (code, at, _) = error(&minmaxout);
    assert_eq!((code.as_str(), at), ("E0300", &*MAX.to_string()));
    let concat = "net n { input x: [1, 28, 28]\n a = conv(2000000000, k=28)\n b = conv(2000000000, k=28)\n concat(a, b)\n flatten\n dense(10)\n loss softmax_xent(classes=10) }";
    let (code, _, _) = error(concat);
    assert_eq!(code, "E0303");
}

#[test]
fn a_hundred_thousand_character_name_gets_no_suggestion_search() {
    let long = "y".repeat(100_000);
    for body in [format!("{long}(3)"), format!("relu from {long}"), format!("conv(4, k=3, {long}=1)")] {
        let source = net(&body);
        let errors = check(&source).expect_err("unknown name");
        assert!(errors.iter().all(|d| d.notes.iter().all(|n| !n.contains("did you mean"))), "{errors:#?}");
    }
}

#[test]
fn thousands_of_misspelt_references_are_each_reported_and_a_bounded_number_suggested() {
    let count = 20_000;
    let mut body = String::from("net n { input x: [8]\n");
    for i in 0..count {
        body.push_str(&format!(" layer{i:05} = relu\n"));
    }
    for i in (0..count).rev() {
        // `layr` for `layer`: one edit from a name above.
        body.push_str(&format!(" relu from layr{i:05}\n"));
    }
    body.push_str(" dense(2)\n loss softmax_xent(classes=2) }");
    let errors = check(&body).expect_err("undefined names");
    let undefined: Vec<&Diagnostic> = errors.iter().filter(|d| d.code.as_deref() == Some("E0200")).collect();
    assert_eq!(undefined.len(), count);
    let suggested = undefined.iter().filter(|d| d.notes.iter().any(|n| n.contains("did you mean"))).count();
    // The first hundred: each search looks at the latest names, and the searches are counted.
    assert_eq!(suggested, 100);
    assert_eq!(undefined[0].notes, ["help: did you mean `layer19999`?"]);
    assert!(undefined[100].notes.is_empty());
}

#[test]
fn a_net_of_fifty_thousand_layers_checks_and_summarises() {
    let mut body = String::from("net long { input x: [16]\n dale(inhibitory=0.5)\n");
    // A chain of ops that keep units: the population walk follows all of it.
    for _ in 0..50_000 {
        body.push_str(" dropout(0.1)\n");
    }
    body.push_str(" dense(2)\n loss softmax_xent(classes=2) }");
    let checked = check(&body).unwrap_or_else(|e| panic!("{e:#?}"));
    let net = &checked.nets[0];
    assert_eq!(net.layers.len(), 50_002);
    assert_eq!(net.population(netc_check::Node::Layer(50_000)), Some(0));
    let summary = netc_check::summary(net, false);
    assert_eq!(summary.lines().count(), 50_002 + 6);
}
