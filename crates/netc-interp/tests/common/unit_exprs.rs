//! Random unit expressions for property tests (here and in netc-exec's tests, which include
//! this file by path).

use proptest::prelude::*;

/// Unit expressions of `x` and the learned `alpha`, of every function and operator the language
/// has. Arguments of `log`, `sqrt` and `pow` are kept positive, so values stay finite.
pub fn expression() -> impl Strategy<Value = String> {
    let leaf =
        prop_oneof![Just("x".to_string()), Just("alpha".to_string()), Just("0.5".to_string()), Just("2".to_string())];
    leaf.prop_recursive(3, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| format!("tanh({a})")),
            inner.clone().prop_map(|a| format!("sigmoid({a})")),
            inner.clone().prop_map(|a| format!("softplus({a})")),
            inner.clone().prop_map(|a| format!("softneglu({a})")),
            inner.clone().prop_map(|a| format!("relu({a})")),
            inner.clone().prop_map(|a| format!("neglu({a})")),
            inner.clone().prop_map(|a| format!("abs({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            inner.clone().prop_map(|a| format!("exp(tanh({a}))")),
            inner.clone().prop_map(|a| format!("log(1 + ({a}) * ({a}))")),
            inner.clone().prop_map(|a| format!("log1p(sigmoid({a}))")),
            inner.clone().prop_map(|a| format!("sqrt(({a}) * ({a}) + 1)")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) + ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) - ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) * ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) / (2 + tanh({b}))")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("max({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("min({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("pow(sigmoid({a}) + 0.5, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("where({a} > {b}, {a}, 0.5 * ({b}))")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) * (({b}) <= 0.25)")),
        ]
    })
}
